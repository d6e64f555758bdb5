"""Where the e2e suite runs: one suite, two providers (pytest --e2e-provider=local|kind, --e2e = kind).

A `Provider` is everything the tests need to know about the cluster under them:

| what | `local` (default) | `kind` (`--e2e`) |
| --- | --- | --- |
| cluster | this machine's cluster (`make cluster`, or started by the session: root conftest's `local_cluster`) | kind from kind-config.yaml (Docker) |
| kubeconfig | .aifn/cluster/kubeconfig | .aifn/e2e/kubeconfig |
| gateway | aifn-ingress + Envoy, .aifn/cluster/gateway (NodePort 31080 on the CPU worker) | Kourier, 127.0.0.1:31080 (kind's port mapping) |
| Triton image | the operator's (`AIFN_TRITON_IMAGE` of the installed Deployment: a CPU Triton 2.51) | `AIFN_E2E_TRITON_IMAGE` or the operator's default, pre-pulled |
| GPUs | advertised by the GPU worker's device plugin (fake devices) | patched into the node's status (`advertise_fake_gpu`) |
| operator | the stack's Helm release `aifn` (left installed) | `helm install` by the suite (uninstalled by its last test) |
| models | hostPath PV /aifn/model_repo (a link to model_repo/) | hostPath PV /aifn/model_repo (kind-config.yaml extraMounts) |
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from support.processes import wait_until

from .cluster import GATEWAY, GPU_NODE_LABEL, GPU_PRODUCT, Kubectl, advertise_fake_gpu

OPERATOR_NAMESPACE = "aifn-system"
RELEASE = "aifn"
OPERATOR_DEPLOYMENT = f"{RELEASE}-aifunction-operator"
MODEL_REPO_ON_NODES = "/aifn/model_repo"  # kind-config.yaml extraMounts; the local cluster links it to model_repo/
PROVIDERS = ("local", "kind")


@dataclass(frozen=True)
class Provider:
    """The cluster under the e2e tests and how it differs between providers."""

    name: str
    kube: Kubectl
    gateway: str  # host:port the host dials; functions are routed by Host header <name>.<namespace>.example.com
    triton_image: str
    owns_release: bool  # True when the suite installed the operator and may uninstall it
    gpu_product: str = GPU_PRODUCT
    fake_gpus: bool = False  # True: no device plugin, `nvidia.com/gpu` is patched into the node's status
    gateway_logs: dict[str, str] = field(default_factory=dict)  # namespace -> selector of the networking layer's pods
    notes: dict[str, str] = field(default_factory=dict)

    def gpu_node(self, count: int = 1) -> str:
        """The GPU worker's name once it has at least `count` allocatable `nvidia.com/gpu`."""
        if self.fake_gpus:
            return advertise_fake_gpu(self.kube, count=max(count, 2))

        def node() -> str | None:
            nodes = (self.kube.get("nodes", selector=GPU_NODE_LABEL) or {}).get("items", [])
            assert len(nodes) == 1, f"one node labelled {GPU_NODE_LABEL} expected, found {len(nodes)}"
            allocatable = int((nodes[0]["status"].get("allocatable") or {}).get("nvidia.com/gpu", "0"))
            return nodes[0]["metadata"]["name"] if allocatable >= count else None

        return wait_until(f"the device plugin to advertise {count} nvidia.com/gpu on the GPU worker",
                          node, 60, interval=2.0)

    def model_volume(self, namespace: str, claim: str = "aifn-models") -> list[dict[str, Any]]:
        """A PV on the nodes' model repository, pre-bound to the PVC `claim` that examples/digits.yaml reads."""
        volume = f"{claim}-{namespace}"
        return [
            {
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": volume, "labels": {"aifn.dev/e2e": "true"}},
                "spec": {
                    "capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": MODEL_REPO_ON_NODES, "type": "Directory"},
                    "claimRef": {"namespace": namespace, "name": claim},
                },
            },
            {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace},
                "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": volume,
                         "resources": {"requests": {"storage": "1Gi"}}},
            },
        ]


def operator_env(kube: Kubectl, name: str) -> str | None:
    """An environment variable of the installed operator's container (None when unset)."""
    deployment = kube.get("deployment", OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE)
    assert deployment is not None, f"the operator release {RELEASE} is not installed in {OPERATOR_NAMESPACE}"
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for var in container.get("env") or []:
            if var["name"] == name:
                return var.get("value")
    return None


def local_provider(kubeconfig: Any, gateway_url: Callable[[], str]) -> Provider:
    """This machine's cluster: Knative, aifn-ingress and the operator come with it (support.cluster.stack)."""
    kube = Kubectl(kubeconfig)
    triton_image = operator_env(kube, "AIFN_TRITON_IMAGE")
    assert triton_image, "the stack's operator release sets operator.tritonImage (AIFN_TRITON_IMAGE)"
    return Provider(name="local", kube=kube, gateway=gateway_url().removeprefix("http://").rstrip("/"),
                    triton_image=triton_image, owns_release=False, fake_gpus=False,
                    gateway_logs={"aifn-ingress": "app.kubernetes.io/name=aifn-gateway"},
                    notes={"gpus": "device plugin", "gateway": "aifn-ingress + Envoy"})


def kind_provider(kube: Kubectl, triton_image: str) -> Provider:
    """The kind cluster the e2e conftest created, with Kourier and the suite's own Helm release."""
    return Provider(name="kind", kube=kube, gateway=GATEWAY, triton_image=triton_image, owns_release=True,
                    fake_gpus=True, gateway_logs={"kourier-system": "app=3scale-kourier-gateway"},
                    notes={"gpus": "patched node status", "gateway": "Kourier"})


def patch_features(kube: Kubectl, data: dict[str, str | None], namespace: str = "knative-serving") -> None:
    """Merge-patch config-features (None removes a key); Knative's webhook validates it."""
    kube.kubectl("patch", "configmap/config-features", "-n", namespace, "--type", "merge", "-p", json.dumps({"data": data}))
