"""End to end on kind: AIFunction -> operator (Helm) -> Knative -> Triton -> an answer, and back to zero.

The tests run in file order and share one function namespace: install, serve, infer through
Kourier, scale to zero, scale from zero, GPU placement on the labelled and tainted worker, the
WaitingForGPUNode report, deletion and clean-up. Figures (cold start, scale-from-zero latency)
are printed with -s.
"""

from __future__ import annotations

import copy
import time
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from sklearn.datasets import load_digits

from .cluster import GATEWAY, GPU_PRODUCT, ROOT, Kube, advertise_fake_gpu, wait_until
from .conftest import OPERATOR_NAMESPACE, RELEASE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMESPACE = "aifn-e2e-functions"
DIAGNOSE_NAMESPACES = [NAMESPACE]
DIGITS = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
READY_TIMEOUT = 900  # the first Triton start in a fresh cluster includes loading torch
SCALE_TO_ZERO_TIMEOUT = 420  # stable window 60s + grace 30s + the example's 30s retention, with slack
figures: dict[str, float] = {}


@pytest.fixture(scope="module")
def functions(operator_release: Kube) -> Kube:
    """A namespace with the PVC `aifn-models` that examples/digits.yaml reads (model_repo/ on every node)."""
    kube = operator_release
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    kube.apply([
        {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"aifn-models-{NAMESPACE}"},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": "/aifn/model_repo", "type": "Directory"},  # kind-config.yaml extraMounts
                "claimRef": {"namespace": NAMESPACE, "name": "aifn-models"},
            },
        },
        {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "aifn-models", "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": f"aifn-models-{NAMESPACE}",
                     "resources": {"requests": {"storage": "1Gi"}}},
        },
    ])
    wait_until(lambda: (kube.get("pvc", "aifn-models", NAMESPACE) or {}).get("status", {}).get("phase") == "Bound", 120, "the PVC to bind")
    return kube


def function_manifest(name: str, gpu: dict[str, Any] | None = None) -> dict[str, Any]:
    manifest = copy.deepcopy(DIGITS)
    manifest["metadata"] = {"name": name, "namespace": NAMESPACE}
    if gpu:
        manifest["spec"]["resources"]["gpu"] = gpu
    return manifest


def condition(function: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((function or {}).get("status") or {}).get("conditions", []):
        if item["type"] == kind:
            return item
    return {}


def wait_ready(kube: Kube, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        function = kube.get("aifunction", name, NAMESPACE)
        ok = condition(function, "Ready").get("status") == "True" and function["status"].get("url")
        return function if ok else None

    return wait_until(ready, READY_TIMEOUT, f"AIFunction {name} to be Ready with a URL", interval=5)


def host_of(function: dict[str, Any]) -> str:
    return urlparse(function["status"]["url"]).hostname or ""


def infer_digits(host: str, samples: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Send held-out digits through Kourier (Host header routing); returns (predicted, true) labels."""
    digits = load_digits()
    images = digits.images[-samples:].astype(np.float32)
    client = httpclient.InferenceServerClient(url=GATEWAY, connection_timeout=30.0, network_timeout=600.0)
    try:
        request = httpclient.InferInput("image", list(images.shape), "FP32")
        request.set_data_from_numpy(images)
        result = client.infer("digits", [request], outputs=[httpclient.InferRequestedOutput("label")], headers={"Host": host})
    finally:
        client.close()
    return result.as_numpy("label").reshape(-1), digits.target[-samples:]


def function_pods(kube: Kube, name: str) -> list[dict[str, Any]]:
    return kube.pods(NAMESPACE, f"serving.knative.dev/service={name}")


def test_operator_runs_from_the_chart_hardened(operator_release: Kube) -> None:
    deployment = operator_release.get("deployment", f"{RELEASE}-aifunction-operator", OPERATOR_NAMESPACE)
    assert deployment["status"].get("availableReplicas") == 1
    pods = operator_release.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/component=operator")
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Running"
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    context = pod["spec"]["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert operator_release.get("crd", "aifunctions.aifn.dev") is not None


def test_digits_becomes_ready_with_a_url(functions: Kube) -> None:
    started = time.monotonic()
    functions.apply(function_manifest("digits"))
    function = wait_ready(functions, "digits")
    figures["ready_s"] = time.monotonic() - started
    service = functions.get("ksvc", "digits", NAMESPACE)
    assert service["metadata"]["ownerReferences"][0]["name"] == "digits"
    assert function["status"]["url"] == service["status"]["url"]
    print(f"\ndigits Ready at {function['status']['url']} after {figures['ready_s']:.1f}s")


def test_inference_through_the_knative_url(functions: Kube) -> None:
    function = functions.get("aifunction", "digits", NAMESPACE)
    started = time.monotonic()
    predicted, truth = infer_digits(host_of(function))
    accuracy = float((predicted == truth).mean())
    print(f"\n64 digits through {GATEWAY} (Host {host_of(function)}): accuracy {accuracy:.3f} in {time.monotonic() - started:.2f}s")
    assert accuracy >= 0.9, (predicted, truth)


def test_scales_to_zero(functions: Kube) -> None:
    started = time.monotonic()
    wait_until(lambda: not function_pods(functions, "digits"), SCALE_TO_ZERO_TIMEOUT, "digits to scale to zero", interval=5)
    figures["to_zero_s"] = time.monotonic() - started
    function = functions.get("aifunction", "digits", NAMESPACE)
    assert condition(function, "Ready").get("status") == "True", "a function at zero replicas is still Ready"
    print(f"\nno digits pods {figures['to_zero_s']:.0f}s after the last request")


def test_scales_from_zero(functions: Kube) -> None:
    assert not function_pods(functions, "digits"), "the previous test left digits at zero"
    function = functions.get("aifunction", "digits", NAMESPACE)
    started = time.monotonic()
    predicted, truth = infer_digits(host_of(function), samples=16)
    figures["from_zero_s"] = time.monotonic() - started
    assert (predicted == truth).mean() >= 0.8
    assert function_pods(functions, "digits"), "a pod serves the request"
    print(f"\nscale from zero: first answer after {figures['from_zero_s']:.1f}s (cold start incl. Triton and model load)")


def test_gpu_function_lands_on_the_gpu_node(functions: Kube) -> None:
    gpu_node = advertise_fake_gpu(functions, count=1)
    functions.apply(function_manifest("digits-gpu", gpu={"count": 1, "product": GPU_PRODUCT}))
    function = wait_ready(functions, "digits-gpu")
    template = functions.get("ksvc", "digits-gpu", NAMESPACE)["spec"]["template"]["spec"]
    assert template["nodeSelector"] == {"nvidia.com/gpu.product": GPU_PRODUCT}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in template["tolerations"]
    pods = function_pods(functions, "digits-gpu")
    assert pods and {p["spec"]["nodeName"] for p in pods} == {gpu_node}
    predicted, truth = infer_digits(host_of(function), samples=16)  # Triton runs on CPU: the GPU is fake
    assert (predicted == truth).mean() >= 0.8
    functions.kubectl("delete", "aifunction", "digits-gpu", "-n", NAMESPACE, "--wait=true", "--timeout=180s", timeout=200)


def test_missing_gpus_are_reported_as_waiting_for_a_gpu_node(functions: Kube) -> None:
    functions.apply(function_manifest("digits-two-gpus", gpu={"count": 2, "product": GPU_PRODUCT}))

    def waiting() -> dict[str, Any] | None:
        scheduled = condition(functions.get("aifunction", "digits-two-gpus", NAMESPACE), "PodsScheduled")
        return scheduled if scheduled.get("reason") == "WaitingForGPUNode" else None

    scheduled = wait_until(waiting, 300, "PodsScheduled=False/WaitingForGPUNode on digits-two-gpus", interval=5)
    assert scheduled["status"] == "False" and "nvidia.com/gpu" in scheduled.get("message", ""), scheduled
    functions.kubectl("delete", "aifunction", "digits-two-gpus", "-n", NAMESPACE, "--wait=true", "--timeout=180s", timeout=200)


def test_delete_cleans_up(functions: Kube) -> None:
    functions.kubectl("delete", "aifunction", "digits", "-n", NAMESPACE, "--wait=true", "--timeout=180s", timeout=200)
    wait_until(lambda: functions.get("ksvc", "digits", NAMESPACE) is None, 180, "the Knative Service to be deleted")
    wait_until(lambda: not (functions.get("revisions", namespace=NAMESPACE, selector="serving.knative.dev/service=digits") or {}).get("items"),
               180, "the revisions to be deleted")
    wait_until(lambda: not function_pods(functions, "digits"), 300, "the pods to be gone")
    assert not (functions.get("aifunctions", namespace=NAMESPACE) or {}).get("items"), "every function of the test is gone"
    print(f"\nfigures: {', '.join(f'{k}={v:.1f}' for k, v in figures.items())}")


def test_helm_uninstall_removes_the_operator_and_keeps_the_crd(functions: Kube) -> None:
    functions.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "3m")
    assert functions.get("deployment", f"{RELEASE}-aifunction-operator", OPERATOR_NAMESPACE) is None
    assert functions.get("clusterrole", f"{RELEASE}-aifunction-operator") is None
    assert functions.get("crd", "aifunctions.aifn.dev") is not None, "crds.keep leaves the CRD (and every AIFunction) in place"
