"""Canary rollout on the real apiserver (with Knative's real Service CRD): the traffic the operator
writes at each step and the status it keeps. No Knative controller runs here, so each revision's
readiness is written as Knative would (TestClient.mark_service_ready); tests/cluster/test_rollout.py
does the same against a real Knative and measures the split."""

from __future__ import annotations

from typing import Any

import pytest

from support.kube_client import TestClient, function
from support.processes import wait_until

pytestmark = pytest.mark.integration
PROMPT = 30.0
SPLIT = [{"revisionName": "fn-00001", "percent": 80}, {"latestRevision": True, "percent": 20}]


def traffic_is(kube: TestClient, namespace: str, expected: list[dict[str, Any]]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        service = kube.get_service(namespace, "fn")
        return service if service and service["spec"].get("traffic") == expected else None

    return wait_until(f"Knative Service traffic {expected}", probe, PROMPT,
                      diagnose=lambda: str((kube.get_service(namespace, "fn") or {}).get("spec", {}).get("traffic")))


def rollout_where(kube: TestClient, namespace: str, what: str, check: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        fn = kube.get_function(namespace, "fn") or {}
        return fn if check((fn.get("status") or {}).get("rollout") or {}) else None

    return wait_until(f"status.rollout: {what}", probe, PROMPT,
                      diagnose=lambda: str(((kube.get_function(namespace, "fn") or {}).get("status") or {}).get("rollout")))


def test_canary_rollback_and_promotion(kube: TestClient, namespace: str, start_operator: Any) -> None:
    start_operator()
    kube.create_function(namespace, function("fn"))
    traffic_is(kube, namespace, [{"latestRevision": True, "percent": 100}])  # Knative's default, stated
    kube.mark_service_ready(namespace, "fn")
    rollout_where(kube, namespace, "fn-00001 rolled out", lambda r: r.get("stableRevision") == "fn-00001")

    # A spec change with a 20% canary: the rolled-out revision keeps 80%.
    kube.patch_function(namespace, "fn", {"spec": {"timeoutSeconds": 30, "rollout": {"canaryTrafficPercent": 20}}})
    traffic_is(kube, namespace, SPLIT)
    kube.mark_service_ready(namespace, "fn", revision=2, traffic=[{"revisionName": "fn-00001", "percent": 80},
                                                                 {"revisionName": "fn-00002", "percent": 20, "latestRevision": True}])
    fn = rollout_where(kube, namespace, "fn-00002 a Ready canary", lambda r: r.get("canaryReady") is True)
    assert fn["status"]["rollout"]["stableRevision"] == "fn-00001"
    assert fn["status"]["rollout"]["split"] == "fn-00001 80%, fn-00002 20%"

    # 0 rolls back without deleting anything; a ready canary does not move the rolled-out revision.
    kube.patch_function(namespace, "fn", {"spec": {"rollout": {"canaryTrafficPercent": 0}}})
    traffic_is(kube, namespace, [{"revisionName": "fn-00001", "percent": 100}, {"latestRevision": True, "percent": 0}])
    kube.mark_service_ready(namespace, "fn", revision=2)
    rollout_where(kube, namespace, "rolled back", lambda r: r.get("canaryTrafficPercent") == 0 and r.get("stableRevision") == "fn-00001")

    # Removing the field promotes: all to the latest, which becomes the rolled-out revision once Ready.
    kube.patch_function(namespace, "fn", {"spec": {"rollout": None}})
    traffic_is(kube, namespace, [{"latestRevision": True, "percent": 100}])
    kube.mark_service_ready(namespace, "fn", revision=2)
    fn = rollout_where(kube, namespace, "fn-00002 promoted", lambda r: r.get("stableRevision") == "fn-00002")
    assert "canaryTrafficPercent" not in fn["status"]["rollout"] and "canaryReady" not in fn["status"]["rollout"]
