"""What `make cluster` installs on the nodes: Knative Serving, its networking layer, Knative Eventing, the operator.

Each step drives the cluster with its admin kubectl (and helm), as a cluster admin following the
README would:
1. Knative Serving 1.23 from its own config/core (support.cluster.knative), then the settings the
   README gives admins plus this cluster's ingress class and domain, patched through Knative's webhook;
2. the networking layer (support.cluster.gateway): aifn-ingress + Envoy, NodePort 31080;
3. Knative Eventing 1.22 (support.cluster.eventing): core, the in-memory channel and the MT
   channel-based broker from its own config/, its images on the CPU worker;
4. the operator with `helm install` of charts/aifunction-operator, the local operator image and
   `operator.tritonImage` / `operator.handlerImage` set to the local Triton and handler images.
The gateway address is written to .aifn/cluster/gateway.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from . import eventing, gateway, knative
from .layout import USER_DIR

Kubectl = Callable[..., subprocess.CompletedProcess]
GATEWAY_FILE = USER_DIR / "gateway"
OPERATOR_RELEASE, OPERATOR_NAMESPACE = "aifn", "aifn-system"
CHART = Path(__file__).resolve().parents[3] / "charts" / "aifunction-operator"


def revision_image(name: str) -> str:
    """The name Knative Revisions use for a local image: `dev.local/...` for `localhost/...`.

    Knative's controller resolves a Revision's image tag to a digest unless the registry is in
    config-deployment's `registries-skipping-tag-resolving`; go-containerregistry reads
    `localhost/aifn/x` as docker.io's `localhost/aifn/x`, so only a name whose first part has a dot
    (`dev.local`, in Knative's default skip list) is left alone. The nodes tag each image under both.
    """
    return "dev.local/" + name.split("/", 1)[1] if name.startswith("localhost/") else name


def tag_for_revisions(name: str, containerd_socket: Path) -> None:
    """Give a node's image its dev.local name too (one copy in containerd, two names)."""
    subprocess.run(["ctr", "--address", str(containerd_socket), "--namespace", "k8s.io", "images", "tag", "--force",
                    name, revision_image(name)], check=True, capture_output=True, text=True)


def _apply(kubectl: Kubectl, docs: list[dict], timeout: float = 120) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=aifn-cluster", "-f", "-",
            input="\n---\n".join(json.dumps(doc) for doc in docs), timeout=timeout)


def _retry(what: str, attempt: Callable[[], subprocess.CompletedProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} failed for {timeout:.0f}s: {result.stderr.strip()[-800:]}")
        time.sleep(1)


def install_knative(kubectl: Kubectl, log: Callable[[str], None]) -> None:
    """Knative Serving's core, Available, configured as the README says (+ this cluster's ingress and domain)."""
    crds, rest = knative.split_crds(knative.core_manifests())
    _apply(kubectl, crds)
    kubectl("wait", "crd", *[crd["metadata"]["name"] for crd in crds], "--for=condition=Established",
            "--timeout=60s", timeout=70)
    _apply(kubectl, rest)
    kubectl("wait", "deployment", "--all", "-n", knative.NAMESPACE, "--for=condition=Available", "--timeout=300s",
            timeout=310)
    for configmap, data in knative.cluster_settings(gateway.INGRESS_CLASS).items():
        patch = json.dumps({"data": data})
        _retry(f"patching {configmap} through Knative's webhook",
               lambda cm=configmap, p=patch: kubectl("patch", f"configmap/{cm}", "-n", knative.NAMESPACE, "--type",
                                                     "merge", "-p", p, check=False), 120)
    log(f"cluster: Knative Serving {knative.RELEASE} configured (ingress class {gateway.INGRESS_CLASS})")


def install_eventing(kubectl: Kubectl, log: Callable[[str], None]) -> None:
    """Knative Eventing's core, in-memory channel and MT channel broker, every workload rolled out."""
    crds, rest = eventing.split_crds(eventing.with_local_cpu_requests(eventing.manifests()))
    _apply(kubectl, crds)
    kubectl("wait", "crd", *[crd["metadata"]["name"] for crd in crds], "--for=condition=Established",
            "--timeout=60s", timeout=70)
    _apply(kubectl, rest)
    for kind, name in eventing.deployments(rest):
        kubectl("rollout", "status", "-n", eventing.NAMESPACE, f"{kind.lower()}/{name}", "--timeout=300s",
                timeout=310)
    log(f"cluster: Knative Eventing {eventing.RELEASE} ready (broker class {eventing.BROKER_CLASS} over InMemoryChannel)")


def remove_eventing(kubectl: Kubectl) -> None:
    """Delete what install_eventing applied: the CRDs first, while Eventing's controllers still run to
    finalize their Brokers, Triggers and sources (deleting a CRD deletes every object of it), then the rest."""
    crds, rest = eventing.split_crds(eventing.manifests())
    for docs in (crds, rest):
        kubectl("delete", "--ignore-not-found", "--wait=true", "--timeout=240s", "-f", "-",
                input="\n---\n".join(json.dumps(doc) for doc in docs), timeout=260)


def install_gateway(kubectl: Kubectl, controller_image: str) -> str:
    """aifn-ingress + Envoy, rolled out; returns (and writes to .aifn/cluster/gateway) the host's address."""
    _apply(kubectl, gateway.manifests(controller_image))
    kubectl("rollout", "status", "-n", gateway.NAMESPACE, f"deployment/{gateway.NAME}", "--timeout=180s",
            timeout=190)
    url = gateway.gateway_url()
    USER_DIR.mkdir(parents=True, exist_ok=True)
    GATEWAY_FILE.write_text(url + "\n")
    return url


def install_operator(helm: Callable[..., subprocess.CompletedProcess], operator_image: str, triton_image: str,
                     handler_image: str) -> None:
    """`helm upgrade --install` of the chart with the local images; waits for the operator to be Ready."""
    repository, tag = operator_image.rsplit(":", 1)
    helm("upgrade", "--install", OPERATOR_RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE,
         "--create-namespace", "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
         "--set", "image.pullPolicy=Never", "--set", f"operator.tritonImage={revision_image(triton_image)}",
         "--set", f"operator.handlerImage={revision_image(handler_image)}",
         "--set", "crds.install=false",  # installed with the control plane
         "--wait", "--timeout", "3m")
