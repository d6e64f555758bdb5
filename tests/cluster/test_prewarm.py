"""Scheduled pre-warm on the real cluster (spec.scaling.schedules): pods are running when a window starts,
without a request and without a new Revision, and the floor is put back when it ends.

The digits model (Triton alone) is deployed with `minReplicas: 0` and left to scale to zero
(a Revision created with `initialReplicas: 0` that never ran cannot be pre-warmed: Knative's
autoscaler has no metrics for it and ignores min-scale; the status says so, see
tests/unit/test_reconcile_table.py). A window is then added that starts at the first whole
minute at least WINDOW_AHEAD seconds away, lasts a minute, and asks for one replica with a
one-minute lead. The operator writes `autoscaling.knative.dev/min-scale: "1"` on the
routed Revision at the lead time (docs/knative.md, "Scheduled pre-warm"): a Ready pod must exist
when the window starts, the Service's generation and the Revisions must be as before, and after the
window the annotation is back at "0" and status.prewarm shows no open window.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support.cluster.stack import OPERATOR_NAMESPACE, OPERATOR_RELEASE

from .conftest import ClusterClient
from .functions import condition, delete_namespace, diagnose, fresh_namespace, model_volume

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAME = "prewarm"
MIN_SCALE = "autoscaling.knative.dev/min-scale"
WINDOW_AHEAD = 120  # seconds from adding the schedule to the window's start, at least
LEAD = 60
DURATION = 60
READY_TIMEOUT = 300.0
SCALE_TO_ZERO_TIMEOUT = 300.0  # Knative's stable window (60 s) and grace period, on a busy machine


def function(namespace: str, schedules: list[dict[str, Any]] | None) -> dict[str, Any]:
    scaling: dict[str, Any] = {"minReplicas": 0, "maxReplicas": 2, "startupTimeout": "5m"}
    if schedules is not None:
        scaling["schedules"] = schedules
    return {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": {"name": NAME, "namespace": namespace},
            "spec": {"model": {"name": "digits", "repository": "pvc://aifn-models"},
                     "resources": {"cpu": "200m", "memory": "2Gi", "sharedMemory": "256Mi"}, "scaling": scaling}}


def ready_pods(cluster: ClusterClient, namespace: str) -> list[dict[str, Any]]:
    pods = cluster.get("pods", "-n", namespace, "-l", f"serving.knative.dev/service={NAME}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and condition(p, "Ready").get("status") == "True"]


def revisions(cluster: ClusterClient, namespace: str) -> dict[str, str | None]:
    """Each Revision of the function and its min-scale annotation."""
    items = cluster.get("revisions", "-n", namespace, "-l", f"serving.knative.dev/service={NAME}")["items"]
    return {r["metadata"]["name"]: (r["metadata"].get("annotations") or {}).get(MIN_SCALE) for r in items}


def status_of(cluster: ClusterClient, namespace: str) -> dict[str, Any]:
    return cluster.get("aifunction", NAME, "-n", namespace).get("status") or {}


def test_a_window_has_ready_pods_when_it_starts_without_a_new_revision(cluster: ClusterClient) -> None:
    namespace = fresh_namespace(cluster, "prewarm")
    try:
        cluster.apply(*model_volume(namespace), function(namespace, None))
        cluster.wait_for(f"AIFunction {namespace}/{NAME} Ready", lambda: condition(
            cluster.get("aifunction", NAME, "-n", namespace), "Ready").get("status") == "True", READY_TIMEOUT,
            lambda: diagnose(cluster, namespace, NAME))
        cluster.wait_for("scale to zero (no request came)", lambda: not cluster.get(
            "pods", "-n", namespace, "-l", f"serving.knative.dev/service={NAME}")["items"], SCALE_TO_ZERO_TIMEOUT,
            lambda: diagnose(cluster, namespace, NAME))
        before = revisions(cluster, namespace)
        assert list(before.values()) == ["0"], before
        generation = cluster.get("ksvc", NAME, "-n", namespace)["metadata"]["generation"]

        now = datetime.now(UTC)
        start = (now + timedelta(seconds=WINDOW_AHEAD + 59)).replace(second=0, microsecond=0)
        cron = f"{start.minute} {start.hour} {start.day} {start.month} *"
        cluster.apply(function(namespace, [{"name": "soon", "cron": cron, "duration": f"{DURATION}s", "minReplicas": 1,
                                            "leadTime": f"{LEAD}s"}]))
        warm_from = start - timedelta(seconds=LEAD)
        upcoming = cluster.wait_for("status.prewarm.next", lambda: (status_of(cluster, namespace).get("prewarm") or {}).get("next"), 60)
        assert upcoming["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ") and upcoming["warmFrom"] == warm_from.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert status_of(cluster, namespace)["prewarm"]["minReplicas"] == 0

        # Until the lead time nothing is warm; from it the Revision's floor is 1 and a pod starts.
        time.sleep(max(0.0, (warm_from - datetime.now(UTC)).total_seconds() - 5))
        assert ready_pods(cluster, namespace) == [] and list(revisions(cluster, namespace).values()) == ["0"]
        cluster.wait_for("min-scale 1 on the routed Revision", lambda: list(revisions(cluster, namespace).values()) == ["1"],
                         60, lambda: diagnose(cluster, namespace, NAME))
        raised_at = datetime.now(UTC)
        pods = cluster.wait_for("a Ready pod", lambda: ready_pods(cluster, namespace), READY_TIMEOUT, lambda: diagnose(cluster, namespace, NAME))
        ready_at = datetime.now(UTC)
        time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
        assert ready_pods(cluster, namespace), "no Ready pod when the window started"
        print(f"\npre-warm: min-scale raised {(raised_at - warm_from).total_seconds():.1f} s after the lead time; pod "
              f"{pods[0]['metadata']['name']} Ready {(start - ready_at).total_seconds():.1f} s before the window started")
        prewarm = status_of(cluster, namespace)["prewarm"]
        assert prewarm["minReplicas"] == 1 and [w["name"] for w in prewarm["windows"]] == ["soon"], prewarm
        assert revisions(cluster, namespace).keys() == before.keys(), "the window created a Revision"
        assert cluster.get("ksvc", NAME, "-n", namespace)["metadata"]["generation"] == generation

        # After the window: the floor is put back and no window is open.
        end = start + timedelta(seconds=DURATION)
        time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()))
        cluster.wait_for("min-scale back to 0", lambda: list(revisions(cluster, namespace).values()) == ["0"], 60,
                         lambda: diagnose(cluster, namespace, NAME))
        prewarm = cluster.wait_for("no open window", lambda: (lambda p: p if p.get("minReplicas") == 0 and not p.get("windows") else None)(
            status_of(cluster, namespace).get("prewarm") or {}), 60)
        assert prewarm["next"]["name"] == "soon", prewarm
        assert revisions(cluster, namespace).keys() == before.keys()
    finally:
        cluster.kubectl("delete", "aifunction", NAME, "-n", namespace, "--wait=false", check=False)
        delete_namespace(cluster, namespace)


OPERATOR = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_RELEASE}-aifunction-operator"


def test_the_admission_policy_lets_the_operator_change_only_min_scale_of_its_own_revisions(cluster: ClusterClient) -> None:
    """The chart's ValidatingAdmissionPolicy, as the operator's ServiceAccount (server-side dry runs: admission runs, nothing changes)."""
    namespace = fresh_namespace(cluster, "prewarm-policy")
    try:
        cluster.apply(*model_volume(namespace), function(namespace, None))
        theirs = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "theirs", "namespace": namespace},
                  "spec": {"template": {"metadata": {"annotations": {"autoscaling.knative.dev/initial-scale": "0"}},
                                        "spec": {"containers": [{"image": "registry.example/theirs:1"}]}}}}
        cluster.apply(theirs)
        cluster.wait_for("both Revisions", lambda: cluster.kubectl("get", "revision", f"{NAME}-00001", "theirs-00001", "-n", namespace,
                                                                   check=False).returncode == 0, 120)

        def as_operator(revision: str, annotation: str) -> Any:
            return cluster.kubectl("annotate", "--as", OPERATOR, "--dry-run=server", "--overwrite", "revision", revision,
                                   "-n", namespace, annotation, check=False)

        allowed = as_operator(f"{NAME}-00001", f"{MIN_SCALE}=1")
        assert allowed.returncode == 0, allowed.stderr
        for revision, annotation in ((f"{NAME}-00001", "example.com/other=1"), ("theirs-00001", f"{MIN_SCALE}=1")):
            refused = as_operator(revision, annotation)
            assert refused.returncode != 0 and "only changes the min-scale annotation of Revisions of functions it manages" in refused.stderr, \
                (revision, annotation, refused.stdout, refused.stderr)
    finally:
        delete_namespace(cluster, namespace)
