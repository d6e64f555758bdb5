"""Knative's own ingress conformance suite (knative.dev/networking/test/conformance/ingress, the version
Knative Serving 1.23 requires) against the cluster's networking layer (ingress class
aifn.ingress.networking.knative.dev): every stable subtest passes or is deliberately skipped
(support.cluster.conformance.SKIPPED, with its reason), and the ones the project relies on (REQUIRED)
ran and passed. docs/conformance.md.

Runs on the session's cluster (support.cluster_session: Knative, aifn-ingress and the operator installed).
Needs `bash hack/build-conformance.sh` (bin/conformance/); without it, or without the KIngress CRD, the
test fails saying what is missing (it is not skipped). Deselect it with
`-m "not slow"`: a full run takes minutes, and up to the suite's 10-minute waits per subtest when the
ingress never becomes ready.
"""

from __future__ import annotations

import pytest

from support.cluster import conformance
from support.cluster_session import ClusterClient

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_knative_ingress_conformance(cluster: ClusterClient) -> None:
    options = conformance.SuiteOptions(kubeconfig=cluster.kubeconfig)
    try:
        run = conformance.run_conformance(options, required=conformance.REQUIRED, log=print)
    except conformance.SetupMissing as missing:
        pytest.fail(f"cannot run Knative's ingress conformance suite: {missing}")
    print(conformance.format_table(run.rows))
    print(run.summary().line(), run.log_file)
    rows = {row.subtest: row for row in run.rows}
    assert set(rows) == set(conformance.STABLE_TESTS), "the suite ran other subtests than run.go's stable ones"
    failed = {name: row.detail for name, row in rows.items() if row.status != "pass" and row.status != "skip"}
    assert not failed, f"subtests failed: {failed}"
    not_passed = {name: f"{rows[name].status}: {rows[name].detail}" for name in conformance.REQUIRED
                  if rows[name].status != "pass"}
    assert not not_passed, f"required subtests did not pass: {not_passed}"
    unexplained = {name: row.detail for name, row in rows.items()
                   if row.status == "skip" and name not in conformance.SKIPPED}
    assert not unexplained, f"skipped without a reason in conformance.SKIPPED: {unexplained}"
