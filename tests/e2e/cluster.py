"""kubectl/helm for the e2e tests (both providers), the kind cluster and its Knative installation, waits, diagnostics.

`Kubectl` and `dump_diagnostics` serve both providers (tests/e2e/providers.py); the rest builds the
kind provider's cluster. Everything here drives real tools (docker, kind, kubectl, helm); nothing
is simulated. Versions are pinned below and can be overridden by environment variables for a
trial run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from support.processes import wait_until

ROOT = Path(__file__).resolve().parents[2]
WORKDIR = ROOT / ".aifn" / "e2e"
CLUSTER_NAME = os.environ.get("AIFN_E2E_CLUSTER", "aifn-e2e")

# Knative releases (GitHub release assets); the README's feature flags are tested against these.
SERVING_VERSION = os.environ.get("AIFN_E2E_KNATIVE_SERVING", "knative-v1.23.0")
KOURIER_VERSION = os.environ.get("AIFN_E2E_KOURIER", "knative-v1.23.0")
EVENTING_VERSION = os.environ.get("AIFN_E2E_KNATIVE_EVENTING", "knative-v1.22.2")
SERVING_URL = "https://github.com/knative/serving/releases/download/{version}/{file}"
KOURIER_URL = "https://github.com/knative-extensions/net-kourier/releases/download/{version}/{file}"
EVENTING_URL = "https://github.com/knative/eventing/releases/download/{version}/{file}"

KOURIER_NODE_PORT = 31080  # published on 127.0.0.1 by kind-config.yaml
GATEWAY = f"127.0.0.1:{KOURIER_NODE_PORT}"
FEATURE_FLAGS = {  # README "What the cluster needs"
    "kubernetes.podspec-nodeselector": "enabled",
    "kubernetes.podspec-tolerations": "enabled",
    "kubernetes.podspec-affinity": "enabled",
    "kubernetes.podspec-runtimeclassname": "enabled",
    "kubernetes.podspec-init-containers": "enabled",
    "kubernetes.podspec-persistent-volume-claim": "enabled",
    "kubernetes.podspec-securitycontext": "enabled",
    "multi-container-probing": "enabled",
}
GPU_NODE_LABEL = "aifn.dev/e2e-node=gpu"
GPU_PRODUCT = "NVIDIA-L4"  # kind-config.yaml labels the gpu worker with it


def tool(name: str) -> str | None:
    """bin/NAME (from `make tools`) or NAME on PATH."""
    built = ROOT / "bin" / name
    return str(built) if built.exists() else shutil.which(name)


def missing_requirements() -> str | None:
    """Why the e2e cannot run here, or None when Docker, kind, kubectl and helm are all usable."""
    if shutil.which("docker") is None:
        return "the docker CLI is not on PATH"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"`docker info` failed (no Docker engine): {(info.stderr or info.stdout).strip()[:300]}"
    for name in ("kind", "kubectl", "helm"):
        if tool(name) is None:
            hint = "go install sigs.k8s.io/kind@v0.33.0" if name == "kind" else "make tools"
            return f"{name} is not installed ({hint})"
    return None


def run(argv: list[str], *, input: str | None = None, timeout: float = 600, check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a command; raise with its output when `check` and it fails."""
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@dataclass(frozen=True)
class Kubectl:
    """kubectl and helm against the e2e cluster's kubeconfig."""

    kubeconfig: Path

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([tool("kubectl") or "kubectl", f"--kubeconfig={self.kubeconfig}", *args], input=input, timeout=timeout, check=check)

    def helm(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([tool("helm") or "helm", f"--kubeconfig={self.kubeconfig}", *args], timeout=timeout, check=check)

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]], namespace: str | None = None) -> None:
        docs = obj if isinstance(obj, list) else [obj]
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=yaml.safe_dump_all(docs))

    def get(self, kind: str, name: str | None = None, namespace: str | None = None, selector: str | None = None) -> Any:
        """The object (or list) as JSON; None when it does not exist."""
        args = ["get", kind] + ([name] if name else []) + (["-n", namespace] if namespace else []) + (["-l", selector] if selector else [])
        result = self.kubectl(*args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise RuntimeError(result.stderr)
        return json.loads(result.stdout)

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return (self.get("pods", namespace=namespace, selector=selector) or {}).get("items", [])


def download(url: str) -> Path:
    """A release manifest, cached under .aifn/e2e/manifests/."""
    target = WORKDIR / "manifests" / url.split("/download/", 1)[1]
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=120) as response:
            target.write_bytes(response.read())
    return target


def create_cluster(kubeconfig: Path) -> None:
    """kind create cluster from kind-config.yaml (reused when AIFN_E2E_REUSE=1 and it exists)."""
    kind = tool("kind") or "kind"
    existing = run([kind, "get", "clusters"]).stdout.split()
    if CLUSTER_NAME in existing:
        if os.environ.get("AIFN_E2E_REUSE") == "1":
            run([kind, "export", "kubeconfig", "--name", CLUSTER_NAME, "--kubeconfig", str(kubeconfig)])
            return
        run([kind, "delete", "cluster", "--name", CLUSTER_NAME], timeout=300)
    run([kind, "create", "cluster", "--name", CLUSTER_NAME, "--config", str(ROOT / "kind-config.yaml"),
         "--kubeconfig", str(kubeconfig), "--wait", "180s"], timeout=900)


def delete_cluster() -> None:
    run([tool("kind") or "kind", "delete", "cluster", "--name", CLUSTER_NAME], timeout=300, check=False)


def install_knative(kube: Kubectl) -> None:
    """Knative Serving + Kourier + Eventing (core, in-memory channel, MT broker) at the pinned versions, configured as the README says."""
    serving = [download(SERVING_URL.format(version=SERVING_VERSION, file=f)) for f in ("serving-crds.yaml", "serving-core.yaml")]
    kourier = download(KOURIER_URL.format(version=KOURIER_VERSION, file="kourier.yaml"))
    # Event triggers need a broker implementation besides the core: the MT channel-based broker over
    # the in-memory channel, as on the local cluster (support.cluster.eventing).
    eventing = [download(EVENTING_URL.format(version=EVENTING_VERSION, file=f))
                for f in ("eventing-crds.yaml", "eventing-core.yaml", "in-memory-channel.yaml", "mt-channel-broker.yaml")]
    kube.kubectl("apply", "-f", str(serving[0]))
    kube.kubectl("wait", "crd", "--all", "--for=condition=Established", "--timeout=120s")
    kube.kubectl("apply", "-f", str(serving[1]))
    kube.kubectl("apply", "-f", str(kourier))
    kube.kubectl("apply", "-f", str(eventing[0]))
    kube.kubectl("wait", "crd", "--all", "--for=condition=Established", "--timeout=120s")
    for manifest in eventing[1:]:
        kube.kubectl("apply", "-f", str(manifest))
    kube.kubectl("patch", "service/kourier", "-n", "kourier-system", "-p", json.dumps(
        {"spec": {"type": "NodePort", "ports": [{"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": KOURIER_NODE_PORT}]}}))
    for namespace in ("knative-serving", "kourier-system", "knative-eventing"):
        kube.kubectl("wait", "deployment", "--all", "-n", namespace, "--for=condition=Available", "--timeout=600s", timeout=620)
    # Knative's webhook validates its ConfigMaps, so they are patched once it is up.
    settings = {
        "config-network": {"ingress-class": "kourier.ingress.networking.knative.dev"},
        "config-domain": {"example.com": ""},  # URLs http://<name>.<namespace>.example.com, routed by Host header
        "config-features": FEATURE_FLAGS,
    }
    for configmap, data in settings.items():
        wait_until(f"Knative's webhook to accept the {configmap} patch",
                   lambda cm=configmap, d=data: _patch_configmap(kube, cm, d), 120, interval=2.0)


def _patch_configmap(kube: Kubectl, name: str, data: dict[str, str]) -> bool:
    patch = json.dumps({"data": data})
    return kube.kubectl("patch", f"configmap/{name}", "-n", "knative-serving", "--type", "merge", "-p", patch, check=False).returncode == 0


def prepull(kube: Kubectl, image: str, timeout: float = 2400) -> None:
    """Pull `image` on both workers once (a DaemonSet that sleeps), so a function's first start is not a download."""
    name = "aifn-e2e-prepull"
    daemonset = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "aifn.dev/e2e-node", "operator": "Exists"}]}]}}},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "pull", "image": image, "command": ["sleep", "86400"],
                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
                },
            },
        },
    }
    kube.apply(daemonset)
    kube.kubectl("rollout", "status", f"daemonset/{name}", "-n", "default", f"--timeout={int(timeout)}s", timeout=timeout + 30)
    kube.kubectl("delete", "daemonset", name, "-n", "default", "--wait=false")


def advertise_fake_gpu(kube: Kubectl, count: int = 1) -> str:
    """Give the GPU-labelled worker an `nvidia.com/gpu` capacity (no device plugin in kind); returns the node name."""
    nodes = kube.get("nodes", selector=GPU_NODE_LABEL)["items"]
    assert len(nodes) == 1, "kind-config.yaml should have one GPU-labelled worker"
    node = nodes[0]["metadata"]["name"]
    patch = [{"op": "add", "path": f"/status/{field}/nvidia.com~1gpu", "value": str(count)} for field in ("capacity", "allocatable")]
    kube.kubectl("patch", "node", node, "--subresource=status", "--type=json", "-p", json.dumps(patch))
    wait_until("the fake GPU to be allocatable",
               lambda: (kube.get("node", node)["status"].get("allocatable") or {}).get("nvidia.com/gpu") == str(count),
               60, interval=2.0)
    return node


def dump_diagnostics(kube: Kubectl, target: Path, namespaces: list[str], gateway_logs: dict[str, str] | None = None) -> Path:
    """What a failing e2e leaves behind for a human: objects, descriptions, events and logs.

    `gateway_logs`: namespace -> label selector of the networking layer's pods (Kourier, aifn-ingress)."""
    target.mkdir(parents=True, exist_ok=True)
    commands = {
        "nodes.txt": ["get", "nodes", "-o", "wide", "--show-labels"],
        "all-pods.txt": ["get", "pods", "-A", "-o", "wide"],
        "aifunctions.yaml": ["get", "aifunctions", "-A", "-o", "yaml"],
        "ksvc.yaml": ["get", "ksvc,configurations,revisions,routes", "-A", "-o", "yaml"],
        "podautoscalers.yaml": ["get", "podautoscalers.autoscaling.internal.knative.dev", "-A", "-o", "yaml"],
        "events.txt": ["get", "events", "-A", "--sort-by=.lastTimestamp"],
        "operator.log": ["logs", "-n", "aifn-system", "-l", "app.kubernetes.io/component=operator", "--tail=2000", "--all-containers"],
        "knative-controller.log": ["logs", "-n", "knative-serving", "deployment/controller", "--tail=500"],
        "knative-autoscaler.log": ["logs", "-n", "knative-serving", "deployment/autoscaler", "--tail=500"],
        "knative-webhook.log": ["logs", "-n", "knative-serving", "deployment/webhook", "--tail=300"],
        "knative-activator.log": ["logs", "-n", "knative-serving", "deployment/activator", "--tail=500"],
        "config-features.yaml": ["get", "configmap", "config-features", "config-autoscaler", "-n", "knative-serving", "-o", "yaml"],
        "serverlessservices.yaml": ["get", "serverlessservices.networking.internal.knative.dev", "-A", "-o", "yaml"],
    }
    for namespace, selector in (gateway_logs or {}).items():
        commands[f"gateway-{namespace}.log"] = ["logs", "-n", namespace, "-l", selector, "--all-containers", "--tail=500", "--prefix"]
    for namespace in namespaces:
        commands[f"describe-{namespace}.txt"] = ["describe", "aifunctions,ksvc,revisions,pods,pvc", "-n", namespace]
        commands[f"triton-{namespace}.log"] = ["logs", "-n", namespace, "-l", "serving.knative.dev/service", "--all-containers", "--tail=500", "--prefix"]
    for filename, args in commands.items():
        result = kube.kubectl(*args, check=False, timeout=60)
        (target / filename).write_text(result.stdout + result.stderr)
    return target
