"""Shared pytest configuration: tiers, opt-in flags and common paths.

Tiers (folders, markers): unit tests (tests/unit) need nothing; `cluster` tests run on the local cluster of `make cluster` (tests/cluster); `triton` tests
(tests/serving: the server, `aifn run`, the handler runtime) start a real tritonserver from the
nvidia-pytriton wheel; `integration` tests (tests/integration) start a real etcd + kube-apiserver +
kube-controller-manager built by `make tools`; `e2e` tests (tests/e2e) run on a provider:
`local` by default (the same local cluster as the `cluster` tier, `local_cluster`) or `kind` with
`--e2e` / `--e2e-provider=kind` (Docker and kind); tests/monitoring checks the chart's alerts and
dashboard with promtool and helm (Debian's prometheus package, `make tools`). A tier whose
requirement is missing is skipped with the reason printed (-rs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cluster_session import ClusterClient, SessionCluster

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CRDS = ROOT / "crds"
MODEL_REPO = ROOT / "model_repo"
SHARED = ROOT.parent / "shared"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--e2e", action="store_true", default=False,
                     help="run the end-to-end tests on kind (Docker); the same as --e2e-provider=kind")
    parser.addoption("--e2e-provider", choices=("local", "kind"), default=None,
                     help="where tests/e2e runs: local (default; the local cluster of `make cluster`, "
                          "reused or started for the session) or kind (Docker and kind)")


def _group_cluster_tests(items: list[pytest.Item]) -> None:
    """Run the tests that use the session's cluster back to back (it starts once, stops after the last);
    tests between them that do not use it (e.g. test_lifecycle, which needs no cluster up) go first."""
    uses = ["local_cluster" in getattr(item, "fixturenames", ()) for item in items]
    if True not in uses:
        return
    last = len(uses) - 1 - uses[::-1].index(True)
    head = [item for item, used in zip(items[:last + 1], uses) if not used]
    users = [item for item, used in zip(items, uses) if used]
    items[:] = head + users + items[last + 1:]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # e2e tests are not skipped here: with the local provider they skip (or fail in CI) as the
    # cluster tier does when no cluster can run; with kind tests/e2e/conftest.py skips them without Docker.
    _group_cluster_tests(items)


_SESSION_CLUSTER = SessionCluster()


@pytest.fixture(scope="session")
def local_cluster() -> ClusterClient:
    """The local cluster with Knative, the networking layer and the operator (support.cluster_session)."""
    return _SESSION_CLUSTER.get()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the session's cluster after the last test that uses it, so later tiers have the machine."""
    if _SESSION_CLUSTER.started is None:
        return
    if nextitem is None or "local_cluster" not in getattr(nextitem, "fixturenames", ()):
        _SESSION_CLUSTER.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_CLUSTER.close()
