"""The operator (`aifn operator` as a child process) against a real kube-apiserver + controller manager.

No Knative controller runs here: where Knative would write a Service's status, the test writes it
through the status subresource (`mark_service_ready`), and where the scheduler would mark a pod
Unschedulable, the test writes that pod status. Everything else is real.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.controller.children import covers
from aifunction_operator.render import render
from aifunction_operator.spec import parse_function
from support.kube_client import TestClient, condition, function
from support.operator_process import OperatorProcess
from support.processes import wait_until

pytestmark = pytest.mark.integration
PROMPT = 10.0  # seconds: "within seconds"


def service(kube: TestClient, namespace: str, name: str, timeout: float = PROMPT) -> dict[str, Any]:
    return wait_until(f"Knative Service {namespace}/{name}", lambda: kube.get_service(namespace, name), timeout)


def function_where(kube: TestClient, namespace: str, name: str, check: Any, what: str, timeout: float = PROMPT) -> dict[str, Any]:
    return wait_until(f"AIFunction {namespace}/{name}: {what}", lambda: (fn := kube.get_function(namespace, name)) is not None and check(fn) and fn, timeout, diagnose=lambda: str((kube.get_function(namespace, name) or {}).get("status")))


def reconcile_count(op: OperatorProcess) -> float:
    """Sum of aifn_reconciles_total over all results."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines() if line.startswith("aifn_reconciles_total{"))


def writes(op: OperatorProcess) -> dict[str, float]:
    """Reconciles so far and the operator's API writes by kind."""
    counts = {"reconciles": reconcile_count(op)}
    for line in op.metrics().splitlines():
        if line.startswith("aifn_writes_total{"):
            counts[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return counts


def ready_reason(fn: dict[str, Any]) -> tuple[str, str]:
    cond = condition(fn, "Ready")
    return cond.get("status", ""), cond.get("reason", "")


def test_function_becomes_a_service_and_mirrors_knative_readiness(kube: TestClient, namespace: str, start_operator: Any) -> None:
    op: OperatorProcess = start_operator()
    created = kube.create_function(namespace, function("digits"))
    svc = service(kube, namespace, "digits")

    desired = render(parse_function(created), OperatorConfig())[0]
    assert covers(svc, desired), "the live Service lacks fields of the rendered one"
    owner = svc["metadata"]["ownerReferences"]
    assert owner == [{"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "name": "digits", "uid": created["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    managers = {m["manager"]: m["operation"] for m in svc["metadata"]["managedFields"]}
    assert managers.get("aifn-operator") == "Apply"

    fn = function_where(kube, namespace, "digits", lambda f: ready_reason(f) == ("Unknown", "Deploying"), "Ready Unknown while Knative deploys")
    assert fn["status"]["observedGeneration"] == 1
    assert "kopf" not in str(fn["status"]), "kopf's bookkeeping must stay out of status"

    started = time.monotonic()
    kube.mark_service_ready(namespace, "digits")
    fn = function_where(kube, namespace, "digits", lambda f: ready_reason(f) == ("True", "Ready"), "Ready True")
    latency = time.monotonic() - started
    assert fn["status"]["url"] == f"http://digits.{namespace}.example.com"
    assert fn["status"]["address"] == f"http://digits.{namespace}.svc.cluster.local"
    assert fn["status"]["latestReadyRevision"] == "digits-00001"
    assert fn["status"]["reason"] == "Ready"
    assert {c["type"] for c in fn["status"]["conditions"]} == {"Ready", "SpecValid", "KnativeFeaturesReady", "ServiceReady", "TriggersReady", "PodsScheduled"}
    print(f"Knative Ready -> AIFunction Ready in {latency:.2f}s")

    # Status is written only when it changes: nothing moves while nothing happens.
    version = fn["metadata"]["resourceVersion"]
    time.sleep(2)
    assert kube.get_function(namespace, "digits")["metadata"]["resourceVersion"] == version  # type: ignore[index]

    metrics = op.metrics()
    assert 'aifn_functions{ready="True",reason="Ready"} 1.0' in metrics
    assert "aifn_reconciles_total{" in metrics and "aifn_reconcile_duration_seconds_count" in metrics


def test_spec_update_updates_the_service_and_observes_the_generation(kube: TestClient, namespace: str, start_operator: Any) -> None:
    start_operator()
    kube.create_function(namespace, function("fn"))
    service(kube, namespace, "fn")
    kube.mark_service_ready(namespace, "fn")
    function_where(kube, namespace, "fn", lambda f: ready_reason(f)[0] == "True", "Ready")

    kube.patch_function(namespace, "fn", {"spec": {"scaling": {"maxReplicas": 7}, "timeoutSeconds": 45}})
    svc = wait_until("the Service to carry max-scale 7", lambda: (s := kube.get_service(namespace, "fn")) and s["spec"]["template"]["metadata"]["annotations"].get("autoscaling.knative.dev/max-scale") == "7" and s, PROMPT)
    assert svc["spec"]["template"]["spec"]["timeoutSeconds"] == 45
    fn = function_where(kube, namespace, "fn", lambda f: (f.get("status") or {}).get("observedGeneration") == 2, "observedGeneration 2")
    # Knative has not seen the new Service generation yet: not Ready until it has.
    assert ready_reason(fn) == ("Unknown", "Deploying")
    kube.mark_service_ready(namespace, "fn")
    function_where(kube, namespace, "fn", lambda f: ready_reason(f) == ("True", "Ready"), "Ready again")


def test_edited_and_deleted_services_are_restored(kube: TestClient, namespace: str, start_operator: Any) -> None:
    start_operator()
    kube.create_function(namespace, function("fn"))
    original = service(kube, namespace, "fn")
    image = original["spec"]["template"]["spec"]["containers"][0]["image"]

    kube.patch_service(namespace, "fn", [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "attacker/image:1"},
        {"op": "replace", "path": "/spec/template/metadata/annotations/autoscaling.knative.dev~1min-scale", "value": "9"},
    ])
    restored = wait_until("the edited Service restored", lambda: (s := kube.get_service(namespace, "fn")) and s["spec"]["template"]["spec"]["containers"][0]["image"] == image and s, PROMPT)
    assert restored["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "0"

    # Stripping the owner reference and our labels is drift too (the Service leaves the watched selection).
    kube.patch_service(namespace, "fn", [{"op": "remove", "path": "/metadata/ownerReferences"}, {"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1managed-by"}])
    restored = wait_until("the owner reference and labels restored", lambda: (s := kube.get_service(namespace, "fn")) and s["metadata"].get("ownerReferences") and s["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "aifn-operator" and s, PROMPT)

    uid = restored["metadata"]["uid"]
    kube.delete_service(namespace, "fn")
    recreated = wait_until("the deleted Service recreated", lambda: (s := kube.get_service(namespace, "fn")) and s["metadata"]["uid"] != uid and s, PROMPT)
    assert recreated["spec"]["template"]["spec"]["containers"][0]["image"] == image


def test_deleting_the_function_garbage_collects_its_service(kube: TestClient, namespace: str, start_operator: Any) -> None:
    start_operator()
    kube.create_function(namespace, function("fn"))
    service(kube, namespace, "fn")
    kube.delete_function(namespace, "fn")
    wait_until("the AIFunction gone (no finalizer holds it)", lambda: kube.get_function(namespace, "fn") is None, PROMPT)
    wait_until("the Service garbage-collected", lambda: kube.get_service(namespace, "fn") is None, 60)


def test_invalid_spec_is_reported_once_and_not_retried(kube: TestClient, namespace: str, start_operator: Any) -> None:
    op = start_operator()
    # Valid for the CRD, rejected by the spec model: a local path works only with `aifn run`.
    kube.create_function(namespace, function("bad", {"model": {"name": "digits", "repository": "./model_repo"}}))
    fn = function_where(kube, namespace, "bad", lambda f: ready_reason(f) == ("False", "InvalidSpec"), "Ready False InvalidSpec")
    assert "spec.model.repository" in condition(fn, "Ready")["message"]
    assert condition(fn, "SpecValid")["status"] == "False"
    events = wait_until("an InvalidSpec Event", lambda: [e for e in kube.events_for(namespace, "bad") if e.reason == "InvalidSpec"], PROMPT)
    assert events[0].type == "Warning" and "spec.model.repository" in events[0].message
    assert kube.get_service(namespace, "bad") is None

    # A permanent error: no retry loop (no new writes, no more events, no more reconciles). kopf writes
    # its own annotations just after the handler returns: wait for a version that holds for a second.
    def settled() -> str | None:
        before = kube.get_function(namespace, "bad")["metadata"]["resourceVersion"]  # type: ignore[index]
        time.sleep(1)
        return before if kube.get_function(namespace, "bad")["metadata"]["resourceVersion"] == before else None  # type: ignore[index]

    version = wait_until("the function's resourceVersion to settle", settled, PROMPT)
    reconciles = reconcile_count(op)
    time.sleep(3)
    assert kube.get_function(namespace, "bad")["metadata"]["resourceVersion"] == version  # type: ignore[index]
    assert len([e for e in kube.events_for(namespace, "bad") if e.reason == "InvalidSpec"]) == 1
    assert reconcile_count(op) == reconciles

    # Fixing the spec recovers.
    kube.patch_function(namespace, "bad", {"spec": {"model": {"repository": "gs://bucket/models"}}})
    service(kube, namespace, "bad")
    function_where(kube, namespace, "bad", lambda f: condition(f, "SpecValid").get("status") == "True", "SpecValid True")


def test_disabled_knative_features_are_explained_and_rechecked_on_change(kube: TestClient, namespace: str, start_operator: Any) -> None:
    kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-nodeselector": "enabled"})
    op = start_operator()
    gpu = {"model": {"name": "resnet", "repository": "s3://models/triton"}, "resources": {"gpu": {"count": 1, "product": "NVIDIA-L4"}}}
    kube.create_function(namespace, function("gpu", gpu))
    fn = function_where(kube, namespace, "gpu", lambda f: ready_reason(f) == ("False", "KnativeFeatureDisabled"), "KnativeFeatureDisabled")
    message = condition(fn, "KnativeFeaturesReady")["message"]
    assert f'`kubernetes.podspec-tolerations: "enabled"` in ConfigMap {namespace}/config-features' in message
    assert "nodeselector" not in message
    assert kube.get_service(namespace, "gpu") is None, "a Service Knative's webhook would reject is not applied"

    kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-nodeselector": "enabled", "kubernetes.podspec-tolerations": "Enabled"})
    svc = service(kube, namespace, "gpu")
    assert svc["spec"]["template"]["spec"]["tolerations"]
    function_where(kube, namespace, "gpu", lambda f: condition(f, "KnativeFeaturesReady").get("status") == "True", "features ready")

    # A settings change that does not concern the function re-checks it without writing anything.
    before = writes(op)
    kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-nodeselector": "enabled", "kubernetes.podspec-tolerations": "Enabled", "kubernetes.podspec-dnspolicy": "enabled"})
    wait_until("the re-check", lambda: reconcile_count(op) > before["reconciles"], PROMPT)
    time.sleep(0.5)
    assert writes(op) == {**before, "reconciles": reconcile_count(op)}, "an unchanged Service is not re-applied"

    kube.put_configmap(namespace, "config-autoscaler", {"enable-scale-to-zero": "false"})
    fn = function_where(kube, namespace, "gpu", lambda f: ready_reason(f) == ("False", "KnativeFeatureDisabled"), "scale to zero disabled")
    assert f'`enable-scale-to-zero: "true"` in ConfigMap {namespace}/config-autoscaler' in condition(fn, "Ready")["message"]


def test_pending_unschedulable_pods_show_as_waiting_for_a_gpu_node(kube: TestClient, namespace: str, start_operator: Any) -> None:
    kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-tolerations": "enabled"})
    start_operator()
    kube.create_function(namespace, function("gpu", {"model": {"name": "m", "repository": "s3://models/triton"}, "resources": {"gpu": {"count": 1}}}))
    service(kube, namespace, "gpu")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gpu-00001-deployment-7d9f-abcde", "labels": {"aifn.dev/function": "gpu", "serving.knative.dev/service": "gpu"}},
        "spec": {"containers": [{"name": "triton", "image": "nvcr.io/nvidia/tritonserver:24.10-pyt-python-py3"}]},
    }
    kube.core.create_namespaced_pod(namespace, pod)
    scheduler_message = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available."
    # What kube-scheduler writes when no node fits (no scheduler runs here).
    kube.core.patch_namespaced_pod_status(pod["metadata"]["name"], namespace, {"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": scheduler_message}]}})
    fn = function_where(kube, namespace, "gpu", lambda f: (f.get("status") or {}).get("reason") == "WaitingForGPUNode", "WaitingForGPUNode")
    assert condition(fn, "PodsScheduled") == {**condition(fn, "PodsScheduled"), "status": "False", "reason": "WaitingForGPUNode", "message": scheduler_message}
    assert condition(fn, "Ready")["reason"] == "WaitingForGPUNode"

    kube.core.patch_namespaced_pod_status(pod["metadata"]["name"], namespace, {"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True", "reason": None, "message": None}]}})
    fn = function_where(kube, namespace, "gpu", lambda f: condition(f, "PodsScheduled").get("status") == "True", "the wait cleared")
    assert fn["status"]["reason"] == "Deploying"


def test_health_and_readiness_endpoints(namespace: str, start_operator: Any) -> None:
    from support.operator_process import http_get

    op = start_operator()
    assert http_get(op.url("/healthz")) == (200, "ok\n")
    assert http_get(op.url("/readyz")) == (200, "ready\n")
    assert op.stop() == 0, "SIGTERM is a clean shutdown"


def test_a_service_of_the_same_name_made_by_someone_else_is_left_alone(kube: TestClient, namespace: str, start_operator: Any) -> None:
    theirs = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "taken"},
        "spec": {"template": {"spec": {"containers": [{"image": "example.com/their/app:1"}]}}},
    }
    kube.custom.create_namespaced_custom_object("serving.knative.dev", "v1", namespace, "services", theirs)
    start_operator()
    kube.create_function(namespace, function("taken"))
    fn = function_where(kube, namespace, "taken", lambda f: condition(f, "ServiceReady").get("reason") == "NotOwned", "ServiceReady False NotOwned")
    assert ready_reason(fn) == ("False", "NotOwned")
    assert fn["status"].get("url") is None
    svc = kube.get_service(namespace, "taken")
    assert svc is not None and svc["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/their/app:1"
    assert not svc["metadata"].get("ownerReferences")

    # Once the name is free, the retry (every 15 s) creates the function's own Service.
    kube.delete_service(namespace, "taken")
    ours = wait_until("the function's own Service", lambda: (s := kube.get_service(namespace, "taken")) and s["metadata"].get("ownerReferences") and s, 40)
    assert ours["metadata"]["ownerReferences"][0]["name"] == "taken"
