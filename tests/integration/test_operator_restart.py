"""Kill the operator (SIGKILL) while 200 functions are being created; a restarted operator converges.

Every function must end with exactly one Knative Service that it controls, a status for its
generation and no kopf progress left behind; no Service may be left without its function.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from support.kube_client import TestClient, function
from support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COUNT = 200


def test_killed_operator_converges_after_restart(kube: TestClient, namespace: str, start_operator: Any) -> None:
    first = start_operator()
    names = [f"fn-{i:03d}" for i in range(COUNT)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        creations = [pool.submit(kube.create_function, namespace, function(name)) for name in names]
        wait_until("the first Services", lambda: len(kube.list_services(namespace)) >= 20, 60)
        first.kill()  # mid-flight: no clean-up, no peering goodbye, in-progress handlers lost
        uids = {f.result()["metadata"]["name"]: f.result()["metadata"]["uid"] for f in creations}
    before_restart = len(kube.list_services(namespace))
    assert before_restart < COUNT, "the operator finished before it was killed; the test proves nothing"

    started = time.monotonic()
    start_operator()

    def converged() -> bool:
        functions = kube.list_functions(namespace)
        return len(functions) == COUNT and all((f.get("status") or {}).get("observedGeneration") == 1 for f in functions) and len(kube.list_services(namespace)) == COUNT

    wait_until(f"all {COUNT} functions converged (had {before_restart} Services at the kill)", converged, 180, interval=1.0)
    print(f"{before_restart}/{COUNT} Services existed at the kill; converged {time.monotonic() - started:.1f}s after the restart")

    services = kube.list_services(namespace)
    assert sorted(s["metadata"]["name"] for s in services) == sorted(names), "no duplicate or orphan Service"
    for svc in services:
        refs = svc["metadata"].get("ownerReferences") or []
        assert len(refs) == 1 and refs[0]["uid"] == uids[svc["metadata"]["name"]] and refs[0]["controller"], svc["metadata"]["name"]
    for fn in kube.list_functions(namespace):
        annotations = fn["metadata"].get("annotations") or {}
        leftovers = [k for k in annotations if k.startswith("aifn.dev/") and k not in ("aifn.dev/last-handled-configuration", "aifn.dev/kopf-managed")]
        assert not leftovers, f"{fn['metadata']['name']} keeps kopf progress {leftovers}"
        assert not fn["metadata"].get("finalizers"), "no finalizer is needed"
        assert fn["status"]["reason"] == "Deploying"
