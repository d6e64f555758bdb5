"""Scheduled pre-warm on the real apiserver (Knative's real Service and Revision CRDs): the operator
process writes a window's floor as min-scale on the routed Revision at the window's edge, shows it
in status.prewarm, and puts it back. No Knative controller runs here, so the Revision and the
Service's traffic are written as Knative would; tests/cluster/test_prewarm.py checks that Knative
then really starts the pods."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support.kube_client import TestClient, function
from support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MIN_SCALE = "autoscaling.knative.dev/min-scale"
PROMPT = 30.0


def add_revision(kube: TestClient, namespace: str) -> None:
    """fn-00001 as Knative creates it from the template (min-scale 0), having run once, routed 100%."""
    revision = {"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
                "metadata": {"name": "fn-00001", "labels": {"serving.knative.dev/service": "fn", "app.kubernetes.io/managed-by": "aifn-operator"},
                             "annotations": {MIN_SCALE: "0"}},
                "spec": {"containers": [{"image": "example.com/triton:1"}]}}
    kube.custom.create_namespaced_custom_object("serving.knative.dev", "v1", namespace, "revisions", revision)
    kube.custom.patch_namespaced_custom_object_status("serving.knative.dev", "v1", namespace, "revisions", "fn-00001",
                                                      {"status": {"actualReplicas": 0, "desiredReplicas": 0}})
    kube.mark_service_ready(namespace, "fn")


def min_scale(kube: TestClient, namespace: str) -> str:
    revision = kube.custom.get_namespaced_custom_object("serving.knative.dev", "v1", namespace, "revisions", "fn-00001")
    return str(revision["metadata"]["annotations"].get(MIN_SCALE))


def prewarm(kube: TestClient, namespace: str) -> dict[str, Any]:
    return ((kube.get_function(namespace, "fn") or {}).get("status") or {}).get("prewarm") or {}


def test_the_floor_follows_the_window_edges_and_is_put_back(kube: TestClient, namespace: str, start_operator: Any) -> None:
    op = start_operator()
    kube.create_function(namespace, function("fn"))
    wait_until("the Knative Service", lambda: kube.get_service(namespace, "fn"), PROMPT, diagnose=op.log_tail)
    add_revision(kube, namespace)

    # A window from the next whole minute (at least 20 s away), one minute long, no lead.
    start = (datetime.now(UTC) + timedelta(seconds=80)).replace(second=0, microsecond=0)
    cron = f"{start.minute} {start.hour} {start.day} {start.month} *"
    kube.patch_function(namespace, "fn", {"spec": {"scaling": {"minReplicas": 0, "schedules": [
        {"name": "soon", "cron": cron, "duration": "1m", "minReplicas": 2, "leadTime": "0s"}]}}})
    upcoming = wait_until("status.prewarm.next", lambda: prewarm(kube, namespace).get("next"), PROMPT, diagnose=op.log_tail)
    assert upcoming["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ") and min_scale(kube, namespace) == "0"

    time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
    wait_until("min-scale 2 at the window's start", lambda: min_scale(kube, namespace) == "2", PROMPT, diagnose=op.log_tail)
    raised = (datetime.now(UTC) - start).total_seconds()
    status = wait_until("status.prewarm.windows", lambda: prewarm(kube, namespace).get("windows"), PROMPT, diagnose=op.log_tail)
    assert [w["name"] for w in status] == ["soon"] and prewarm(kube, namespace)["minReplicas"] == 2

    end = start + timedelta(minutes=1)
    time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()))
    wait_until("min-scale 0 after the window", lambda: min_scale(kube, namespace) == "0", PROMPT, diagnose=op.log_tail)
    released = (datetime.now(UTC) - end).total_seconds()
    print(f"\npre-warm edges on the dev control plane: raised {raised:.1f} s after the start, put back {released:.1f} s after the end")

    # Schedules removed: status.prewarm goes; the Revision stays as the template made it.
    kube.patch_function(namespace, "fn", {"spec": {"scaling": {"schedules": None}}})
    wait_until("status.prewarm removed", lambda: not prewarm(kube, namespace), PROMPT, diagnose=op.log_tail)
    assert min_scale(kube, namespace) == "0"
    assert kube.get_service(namespace, "fn")["metadata"]["generation"] == 1, "a window must not change the Service"
