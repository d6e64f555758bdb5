"""End to end: AIFunction -> operator (Helm) -> Knative -> Triton -> an answer through the gateway, and back to zero.

Runs on the provider chosen on the command line (tests/e2e/providers.py): `local` (default, this
machine's cluster with aifn-ingress + Envoy) or `kind` (`--e2e`, Kourier). The tests run in file
order and share one fresh namespace:
1. the operator runs from the chart, hardened;
2. examples/digits.yaml becomes Ready with a URL; the 360 held-out digits of the model card through
   the gateway (Host header routing), accuracy >= 0.97;
3. the function scales to zero (no pod left, the activator in the path) and back from zero through
   the activator; the cold start is measured;
4. GPU functions (table): one fits and lands on the GPU worker with the product node selector, the
   toleration and the GPU limit, read from the real pod, and serves (Triton's CPU build: the GPUs
   are fake); a product no node has and more GPUs than a node has -> WaitingForGPUNode with the
   real scheduler's message;
5. a Knative feature flag turned off (config-features) -> KnativeFeatureDisabled naming the key,
   for a running GPU function and one created meanwhile; the flag restored -> both Ready, the
   functions untouched (the flag is restored in a finally);
6. delete -> the Knative Services, their revisions and pods are gone;
7. kind only: helm uninstall removes the operator and keeps the CRD (locally the release belongs
   to the cluster's stack and stays).
Figures (time of each test, time to zero, cold start from zero) are printed with -s.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from support.processes import wait_until

from .cluster import GPU_PRODUCT, ROOT, Kubectl
from .providers import OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE, RELEASE, Provider, patch_features

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DIGITS = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
MODEL_CARD = json.loads((ROOT / "model_repo" / "digits" / "metrics.json").read_text())
MIN_ACCURACY = 0.97  # the model card: 0.9889 on the held-out 360
MAX_BATCH = 128  # model_repo/digits/config.pbtxt max_batch_size
READY_TIMEOUT = 600  # a first Triton start includes loading torch in the python backend
# Knative's stable window (60s) without requests, the scale-to-zero grace period (30s), the
# example's scaleToZeroRetention (30s), then the pod's drain; with slack.
SCALE_TO_ZERO_TIMEOUT = 360
# The example requests 1 CPU. Each node of the local cluster has the host's CPUs (2 on a CI runner),
# and Knative, the gateway and the operator request about 0.9 CPU of the CPU worker: a 1-CPU
# function leaves no room for anything else (a second tenant's pod made a scale from zero
# Unschedulable). A request is not a limit: Triton still uses the idle CPUs.
FUNCTION_CPU = "500m"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
FLAG = "kubernetes.podspec-tolerations"  # every GPU function needs it (its default toleration)
figures: dict[str, float] = {}  # printed at the end of the module
last_request: dict[str, float] = {}  # function -> time.monotonic() of its last answered request


# --- helpers ------------------------------------------------------------------------------------

def held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    """The model card's held-out split (model_repo/digits/metrics.json), without importing torch."""
    split = MODEL_CARD["split"]
    data = load_digits()
    _, test_idx = train_test_split(np.arange(len(data.target)), test_size=split["test_fraction"],
                                   random_state=split["random_state"], stratify=data.target)
    test_idx = np.sort(test_idx)
    assert len(test_idx) == split["held_out_size"]
    return data.images[test_idx].astype(np.float32), data.target[test_idx]


def function_manifest(name: str, namespace: str, gpu: dict[str, Any] | None = None) -> dict[str, Any]:
    """examples/digits.yaml in `namespace` under `name`, requesting FUNCTION_CPU; with `gpu`, a GPU function."""
    manifest = copy.deepcopy(DIGITS)
    manifest["metadata"]["name"] = name
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["resources"]["cpu"] = FUNCTION_CPU
    if gpu:
        manifest["spec"]["resources"]["gpu"] = gpu
    return manifest


def condition(function: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((function or {}).get("status") or {}).get("conditions", []):
        if item["type"] == kind:
            return item
    return {}


def wait_ready(kube: Kubectl, namespace: str, name: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        function = kube.get("aifunction", name, namespace)
        ok = condition(function, "Ready").get("status") == "True" and (function or {}).get("status", {}).get("url")
        return function if ok else None

    return wait_until(f"AIFunction {namespace}/{name} to be Ready with a URL", ready, timeout, interval=2)


def wait_reason(kube: Kubectl, namespace: str, name: str, kind: str, reason: str, timeout: float = 180) -> dict[str, Any]:
    """The condition `kind` once its reason is `reason`."""
    def probe() -> dict[str, Any] | None:
        found = condition(kube.get("aifunction", name, namespace), kind)
        return found if found.get("reason") == reason else None

    return wait_until(f"{kind} reason {reason} on AIFunction {namespace}/{name}", probe, timeout, interval=2)


def host_of(function: dict[str, Any]) -> str:
    return urlparse(function["status"]["url"]).hostname or ""


def infer(gateway: str, host: str, images: np.ndarray) -> np.ndarray:
    """Labels for `images` through the gateway (Host header routing), in batches Triton accepts."""
    client = httpclient.InferenceServerClient(url=gateway, connection_timeout=60.0, network_timeout=600.0)
    labels = []
    try:
        for start in range(0, len(images), MAX_BATCH):
            batch = images[start:start + MAX_BATCH]
            tensor = httpclient.InferInput("image", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            result = client.infer("digits", [tensor], outputs=[httpclient.InferRequestedOutput("label")], headers={"Host": host})
            labels.append(result.as_numpy("label").reshape(-1))
    finally:
        client.close()
    return np.concatenate(labels)


def function_pods(kube: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    return kube.pods(namespace, f"serving.knative.dev/service={name}")


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def pod_condition_time(pod: dict[str, Any], kind: str) -> datetime | None:
    for item in pod["status"].get("conditions", []):
        if item["type"] == kind and item["status"] == "True":
            return timestamp(item["lastTransitionTime"])
    return None


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def timed(request: pytest.FixtureRequest) -> Iterator[None]:
    started = time.monotonic()
    yield
    figures[f"test {request.node.name}"] = time.monotonic() - started


@pytest.fixture(scope="module", autouse=True)
def summary(provider: Provider) -> Iterator[None]:
    started = time.monotonic()
    yield
    figures["e2e module total"] = time.monotonic() - started
    print(f"\n=== e2e figures (provider {provider.name}, gateway {provider.gateway}, Triton {provider.triton_image}) ===")
    for key, value in figures.items():
        print(f"  {key}: {value:.1f}s")


# --- tests --------------------------------------------------------------------------------------

def test_operator_runs_from_the_chart_hardened(provider: Provider) -> None:
    kube = provider.kube
    assert kube.get("deployment", OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE) is not None, "the operator release is installed"
    # Rolled out (a `helm upgrade` of the release may be in progress on a reused cluster).
    kube.kubectl("rollout", "status", f"deployment/{OPERATOR_DEPLOYMENT}", "-n", OPERATOR_NAMESPACE, "--timeout=180s", timeout=190)
    deployment = kube.get("deployment", OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE)
    assert deployment["status"].get("availableReplicas") == 1
    pods = [p for p in kube.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/component=operator") if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Running"
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    context = pod["spec"]["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert kube.get("crd", "aifunctions.aifn.dev") is not None
    print(f"\noperator {pod['metadata']['name']} ({pod['spec']['containers'][0]['image']}) on {pod['spec']['nodeName']}")


def test_digits_becomes_ready_with_a_url(functions: tuple[Provider, str]) -> None:
    provider, namespace = functions
    kube = provider.kube
    started = time.monotonic()
    kube.apply(function_manifest("digits", namespace))
    function = wait_ready(kube, namespace, "digits")
    figures["digits Ready after apply"] = time.monotonic() - started
    service = kube.get("ksvc", "digits", namespace)
    assert service["metadata"]["ownerReferences"][0]["name"] == "digits"
    assert function["status"]["url"] == service["status"]["url"] == f"http://digits.{namespace}.example.com"
    triton = service["spec"]["template"]["spec"]["containers"][0]
    assert triton["image"] == provider.triton_image
    print(f"\ndigits Ready at {function['status']['url']} after {figures['digits Ready after apply']:.1f}s ({triton['image']})")


def test_held_out_digits_through_the_gateway(functions: tuple[Provider, str]) -> None:
    provider, namespace = functions
    function = provider.kube.get("aifunction", "digits", namespace)
    images, truth = held_out_digits()
    started = time.monotonic()
    predicted = infer(provider.gateway, host_of(function), images)
    elapsed = time.monotonic() - started
    last_request["digits"] = time.monotonic()
    accuracy = float((predicted == truth).mean())
    print(f"\n{len(truth)} held-out digits through {provider.gateway} (Host {host_of(function)}): "
          f"accuracy {accuracy:.4f} ({int((predicted == truth).sum())}/{len(truth)}) in {elapsed:.2f}s")
    assert accuracy >= MIN_ACCURACY, list(zip(truth[predicted != truth], predicted[predicted != truth]))


def test_scales_to_zero(functions: tuple[Provider, str]) -> None:
    provider, namespace = functions
    kube = provider.kube
    since = last_request.get("digits", time.monotonic())
    wait_until("Knative to scale digits-00001 to 0 replicas",
               lambda: (kube.get("deployment", "digits-00001-deployment", namespace) or {}).get("spec", {}).get("replicas") == 0,
               SCALE_TO_ZERO_TIMEOUT, interval=2)
    figures["last request -> 0 replicas"] = time.monotonic() - since
    wait_until("the last digits pod to be gone", lambda: not function_pods(kube, namespace, "digits"), 180, interval=2)
    figures["last request -> no pod left"] = time.monotonic() - since
    sks = kube.get("serverlessservices.networking.internal.knative.dev", "digits-00001", namespace)
    assert sks["spec"]["mode"] == "Proxy", "at zero the activator is in the path"
    function = kube.get("aifunction", "digits", namespace)
    assert condition(function, "Ready").get("status") == "True", "a function at zero replicas is still Ready"
    print(f"\ndigits: 0 replicas {figures['last request -> 0 replicas']:.0f}s and no pod "
          f"{figures['last request -> no pod left']:.0f}s after the last request; SKS mode {sks['spec']['mode']}")


def test_scales_from_zero_through_the_activator(functions: tuple[Provider, str]) -> None:
    provider, namespace = functions
    kube = provider.kube
    assert not function_pods(kube, namespace, "digits"), "the previous test left digits at zero"
    function = kube.get("aifunction", "digits", namespace)
    images, truth = held_out_digits()
    started = time.monotonic()
    predicted = infer(provider.gateway, host_of(function), images[:16])
    figures["cold start from zero (first answer)"] = time.monotonic() - started
    assert (predicted == truth[:16]).mean() >= 0.9, (predicted, truth[:16])
    pods = [p for p in function_pods(kube, namespace, "digits") if not p["metadata"].get("deletionTimestamp")]
    assert pods, "a pod serves the request"
    name = pods[0]["metadata"]["name"]

    def ready_pod() -> dict[str, Any] | None:  # the activator forwards once its own probe passes, before the kubelet's
        pod = kube.get("pod", name, namespace)
        return pod if pod and pod_condition_time(pod, "Ready") else None

    pod = wait_until(f"pod {name} to be Ready", ready_pod, 60, interval=2.0)
    created = timestamp(pod["metadata"]["creationTimestamp"])
    scheduled, ready = pod_condition_time(pod, "PodScheduled"), pod_condition_time(pod, "Ready")
    assert scheduled and ready, pod["status"]
    figures["cold start: pod created -> Ready"] = (ready - created).total_seconds()
    print(f"\nscale from zero: first answer after {figures['cold start from zero (first answer)']:.1f}s through the activator; "
          f"pod {pod['metadata']['name']} on {pod['spec']['nodeName']}: created -> scheduled "
          f"{(scheduled - created).total_seconds():.0f}s -> Ready {(ready - created).total_seconds():.0f}s "
          f"(Triton start and model load; timestamps have 1s resolution)")


@dataclass(frozen=True)
class GpuCase:
    name: str
    count: int
    product: str | None
    scheduler_says: str | None  # None: the function becomes Ready on the GPU worker
    products: tuple[str, ...] = ()  # spec.resources.gpu.products instead of product (GPU-type fallback)
    keep: bool = True  # leave the function running for the tests after this one

    @property
    def gpu(self) -> dict[str, Any]:
        return {"count": self.count, **({"products": list(self.products)} if self.products else {"product": self.product})}


GPU_CASES = [
    GpuCase("digits-gpu", 1, GPU_PRODUCT, None),
    # The first product no node has: the real scheduler places the pod on the GPU worker's product, the second choice.
    GpuCase("digits-fallback", 1, None, None, products=("NVIDIA-H100-80GB-HBM3", GPU_PRODUCT), keep=False),
    GpuCase("digits-h100", 1, "NVIDIA-H100", "didn't match Pod's node affinity/selector"),
    GpuCase("digits-no-product", 1, None, "didn't match Pod's node affinity/selector", products=("NVIDIA-H100", "NVIDIA-A100-SXM4-80GB")),
    GpuCase("digits-three-gpus", 3, GPU_PRODUCT, "Insufficient nvidia.com/gpu"),
]


@pytest.mark.parametrize("case", GPU_CASES, ids=[case.name for case in GPU_CASES])
def test_gpu_placement(functions: tuple[Provider, str], case: GpuCase) -> None:
    provider, namespace = functions
    kube = provider.kube
    gpu_node = provider.gpu_node(1)
    started = time.monotonic()
    kube.apply(function_manifest(case.name, namespace, gpu=case.gpu))
    if case.scheduler_says is None:
        function = wait_ready(kube, namespace, case.name)
        figures[f"{case.name} Ready after apply"] = time.monotonic() - started
        pods = [p for p in function_pods(kube, namespace, case.name) if not p["metadata"].get("deletionTimestamp")]
        assert pods, "a Ready function just created has its initial pod"
        pod = pods[0]
        spec = pod["spec"]
        triton = next(c for c in spec["containers"] if c["name"] == "triton")
        print(f"\n{case.name}: Ready after {figures[f'{case.name} Ready after apply']:.1f}s; pod {pod['metadata']['name']} on "
              f"{spec['nodeName']}, nodeSelector {spec.get('nodeSelector')}, limits {triton['resources'].get('limits')}")
        assert spec["nodeName"] == gpu_node
        if case.products:
            required = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": list(case.products)} in required[0]["matchExpressions"]
        else:
            assert spec.get("nodeSelector", {}).get("nvidia.com/gpu.product") == case.product
        landed = wait_until(f"{case.name}'s status to name the GPU product its pod landed on",
                            lambda: (kube.get("aifunction", case.name, namespace) or {}).get("status", {}).get("gpuProduct"), 60, interval=2)
        print(f"{case.name}: status.gpuProduct {landed!r}")
        assert landed == provider.gpu_product
        assert GPU_TOLERATION in spec.get("tolerations", [])
        assert triton["resources"]["limits"]["nvidia.com/gpu"] == str(case.count)
        if not provider.fake_gpus:  # a device plugin allocated the GPU: it tells the container which, as NVIDIA's does
            env = dict(line.split("=", 1) for line in kube.kubectl(
                "exec", pod["metadata"]["name"], "-n", namespace, "-c", "triton", "--", "env").stdout.splitlines() if "=" in line)
            print(f"{case.name}: device plugin env NVIDIA_VISIBLE_DEVICES={env.get('NVIDIA_VISIBLE_DEVICES')!r} "
                  f"AIFN_FAKE_GPU={env.get('AIFN_FAKE_GPU')!r}")
            assert env.get("NVIDIA_VISIBLE_DEVICES"), env
        images, truth = held_out_digits()
        predicted = infer(provider.gateway, host_of(function), images)  # Triton's CPU build: the GPUs are fake
        accuracy = float((predicted == truth).mean())
        print(f"{case.name}: {len(truth)} held-out digits, accuracy {accuracy:.4f}")
        assert accuracy >= MIN_ACCURACY
        if not case.keep:
            kube.kubectl("delete", "aifunction", case.name, "-n", namespace, "--wait=true", "--timeout=180s", timeout=200)
        return
    scheduled = wait_reason(kube, namespace, case.name, "PodsScheduled", "WaitingForGPUNode")
    figures[f"{case.name} WaitingForGPUNode after apply"] = time.monotonic() - started
    function = kube.get("aifunction", case.name, namespace)
    pending = [p for p in function_pods(kube, namespace, case.name) if p["status"].get("phase") == "Pending"]
    scheduler = [c.get("message", "") for p in pending for c in p["status"].get("conditions", [])
                 if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"]
    print(f"\n{case.name}: {scheduled['reason']} after {figures[f'{case.name} WaitingForGPUNode after apply']:.1f}s: "
          f"{scheduled.get('message')!r}; Ready: {condition(function, 'Ready').get('reason')}")
    assert scheduled["status"] == "False" and case.scheduler_says in scheduled.get("message", ""), scheduled
    assert scheduler and any(scheduled["message"].startswith(words) for words in scheduler), ("the function shows the scheduler's own words", scheduler)
    if case.products:
        assert f"GPU products tried (nvidia.com/gpu.product): {', '.join(case.products)}" in scheduled["message"], scheduled
    assert condition(function, "Ready").get("status") != "True"
    kube.kubectl("delete", "aifunction", case.name, "-n", namespace, "--wait=true", "--timeout=180s", timeout=200)


def test_disabled_knative_feature_is_reported_and_recovers(functions: tuple[Provider, str]) -> None:
    """config-features' tolerations flag off: a running GPU function and one created meanwhile report
    KnativeFeatureDisabled naming the key; the flag back on: both Ready without touching them."""
    provider, namespace = functions
    kube = provider.kube
    running, late = "digits-gpu", "digits-gpu-late"
    before = {name: kube.get("aifunction", name, namespace) for name in (running,)}
    assert condition(before[running], "Ready").get("status") == "True", "the GPU test left digits-gpu Ready"
    original = (kube.get("configmap", "config-features", "knative-serving")["data"] or {}).get(FLAG)
    started = time.monotonic()
    try:
        patch_features(kube, {FLAG: "disabled"})
        kube.apply(function_manifest(late, namespace, gpu={"count": 1, "product": provider.gpu_product}))
        for name in (running, late):
            blocked = wait_reason(kube, namespace, name, "KnativeFeaturesReady", "KnativeFeatureDisabled", timeout=120)
            function = kube.get("aifunction", name, namespace)
            print(f"\n{name}: KnativeFeaturesReady={blocked['status']} {blocked['reason']}: {blocked.get('message')!r}; "
                  f"Ready: {condition(function, 'Ready').get('status')}/{condition(function, 'Ready').get('reason')}")
            assert blocked["status"] == "False" and FLAG in blocked.get("message", ""), blocked
            assert condition(function, "Ready").get("status") == "False"
        figures["flag off -> both KnativeFeatureDisabled"] = time.monotonic() - started
        assert kube.get("ksvc", late, namespace) is None, "nothing is applied while the flag is off"
    finally:
        patch_features(kube, {FLAG: original})
    restored = time.monotonic()
    for name in (running, late):
        wait_ready(kube, namespace, name)
    figures["flag back on -> both Ready"] = time.monotonic() - restored
    after = kube.get("aifunction", running, namespace)
    assert after["metadata"]["generation"] == before[running]["metadata"]["generation"], "the function was not touched"
    assert condition(after, "KnativeFeaturesReady").get("status") == "True"
    print(f"flag restored to {original!r}: both Ready after {figures['flag back on -> both Ready']:.1f}s")


def test_delete_cleans_up(functions: tuple[Provider, str]) -> None:
    provider, namespace = functions
    kube = provider.kube
    names = [item["metadata"]["name"] for item in (kube.get("aifunctions", namespace=namespace) or {}).get("items", [])]
    assert "digits" in names, names
    started = time.monotonic()
    kube.kubectl("delete", "aifunctions", *names, "-n", namespace, "--wait=true", "--timeout=180s", timeout=200)
    for name in names:
        wait_until(f"the Knative Service {name} to be deleted",
                   lambda name=name: kube.get("ksvc", name, namespace) is None, 180, interval=2.0)
        wait_until(f"the revisions of {name} to be deleted",
                   lambda name=name: not (kube.get("revisions", namespace=namespace, selector=f"serving.knative.dev/service={name}") or {}).get("items"),
                   180, interval=2.0)
        wait_until(f"the pods of {name} to be gone",
                   lambda name=name: not function_pods(kube, namespace, name), 300, interval=2.0)
    figures["delete -> services, revisions, pods gone"] = time.monotonic() - started
    assert not (kube.get("aifunctions", namespace=namespace) or {}).get("items"), "every function of the test is gone"
    print(f"\ndeleted {names}: Services, revisions and pods gone after {figures['delete -> services, revisions, pods gone']:.1f}s")


def test_helm_uninstall_removes_the_operator_and_keeps_the_crd(provider: Provider) -> None:
    if not provider.owns_release:
        pytest.skip(f"provider {provider.name}: the operator release belongs to the cluster's stack and stays installed")
    kube = provider.kube
    kube.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "3m")
    assert kube.get("deployment", OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE) is None
    assert kube.get("clusterrole", OPERATOR_DEPLOYMENT) is None
    assert kube.get("crd", "aifunctions.aifn.dev") is not None, "crds.keep leaves the CRD (and every AIFunction) in place"
