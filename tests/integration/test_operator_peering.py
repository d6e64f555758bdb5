"""Two replicas with kopf peering never fight: only the higher priority works; the other takes over when it leaves."""

from __future__ import annotations

import time
from typing import Any

import pytest

from support.kube_client import TestClient, function
from support.operator_process import OperatorProcess
from support.processes import wait_until

pytestmark = pytest.mark.integration


def reconciles(op: OperatorProcess) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines() if line.startswith("aifn_reconciles_total{"))


def test_only_the_highest_priority_replica_works(kube: TestClient, namespace: str, start_operator: Any) -> None:
    peering = "--peering=aifn-test"
    high: OperatorProcess = start_operator(peering, "--priority=200")
    low: OperatorProcess = start_operator(peering, "--priority=100", wait_ready=False)
    # Both replicas keep their record alive in the KopfPeering object; the lower one starts paused.
    wait_until("two live peers", lambda: low.alive_or_fail() and len(kube.custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", "aifn-test").get("status") or {}) == 2, 20, diagnose=low.log_tail)

    kube.create_function(namespace, function("one"))
    wait_until("the Service", lambda: kube.get_service(namespace, "one"), 15)
    kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-nodeselector": "enabled"})  # re-check trigger for both
    time.sleep(2)
    assert reconciles(high) >= 1
    assert reconciles(low) == 0, "the paused replica must not write"

    assert high.stop() == 0  # a clean exit removes its peering record, so the other resumes at once
    wait_until("the low-priority replica to resume", lambda: "Resuming operations" in low.log_tail(100_000), 30, diagnose=low.log_tail)
    kube.create_function(namespace, function("two"))
    wait_until("the Service made by the remaining replica", lambda: kube.get_service(namespace, "two"), 15, diagnose=low.log_tail)
    assert reconciles(low) >= 1
