"""What the cluster tier's function tests share: the handler image and operator setting, the model
volume, conditions, logs, diagnostics and a function's copy of an example in a test namespace."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import yaml

from support.cluster import images
from support.cluster.handler_image import HANDLER_IMAGE, handler_image_archive
from support.cluster.layout import MODEL_REPO_LINK, NODES
from support.cluster.stack import CHART, OPERATOR_NAMESPACE, OPERATOR_RELEASE, revision_image, tag_for_revisions
from support.cluster_session import ClusterClient
from support.helm import helm

ROOT = CHART.parents[1]
HANDLER_EXAMPLES = ROOT / "examples" / "handlers"
CLAIM = "aifn-models"
REVISION_IMAGE = revision_image(HANDLER_IMAGE)  # dev.local/aifn/aifn-handler:0.1.0


def import_handler_image(log: list[str]) -> None:
    """The handler image in every node's containerd, under its localhost/ and dev.local/ names (idempotent)."""
    archive = handler_image_archive(log=log.append)  # cached; a first build takes about 2 minutes
    for node in NODES:
        if images.import_archive(archive, HANDLER_IMAGE, node.containerd_socket):
            log.append(f"imported {HANDLER_IMAGE} into {node.name}")
        tag_for_revisions(HANDLER_IMAGE, node.containerd_socket)


def operator_handler_image(cluster: ClusterClient) -> str | None:
    """AIFN_HANDLER_IMAGE of the release's operator container (None: unset)."""
    deployments = cluster.get("deployments", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=aifunction-operator")
    assert len(deployments["items"]) == 1, f"one operator Deployment expected in {OPERATOR_NAMESPACE}"
    container = deployments["items"][0]["spec"]["template"]["spec"]["containers"][0]
    return next((e.get("value") for e in container.get("env") or [] if e["name"] == "AIFN_HANDLER_IMAGE"), None)


def ensure_operator_handler_image(cluster: ClusterClient, log: list[str]) -> None:
    """The operator runs handlers from the dev.local image; set it only where the stack left the chart's default."""
    current = operator_handler_image(cluster)
    chart_default = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]["handlerImage"]
    if current in (None, chart_default):
        log.append(f"the stack's release has AIFN_HANDLER_IMAGE={current}: helm upgrade --set "
                   f"operator.handlerImage={REVISION_IMAGE}")
        helm("upgrade", OPERATOR_RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE, "--reuse-values",
             "--set", f"operator.handlerImage={REVISION_IMAGE}", "--wait", "--timeout", "3m",
             kubeconfig=cluster.kubeconfig, timeout=240)
        current = operator_handler_image(cluster)
    assert current is not None and current.startswith("dev.local/"), (
        f"the operator's AIFN_HANDLER_IMAGE is {current!r}: Knative Revisions on this cluster need a dev.local/ "
        f"image (the nodes hold the handler image as {REVISION_IMAGE}); install the operator with "
        f"`--set operator.handlerImage={REVISION_IMAGE}` (support.cluster.stack.install_operator)")


def handler_ready(cluster: ClusterClient) -> None:
    """The handler image on the nodes and the operator set to run it (prints what it had to do)."""
    log: list[str] = []
    import_handler_image(log)
    ensure_operator_handler_image(cluster, log)
    if log:
        print("\n".join(log))


def model_volume(namespace: str) -> list[dict[str, Any]]:
    """A hostPath PV on the nodes' model repository, pre-bound to the PVC the examples read (as tests/e2e)."""
    return [
        {"apiVersion": "v1", "kind": "PersistentVolume",
         "metadata": {"name": f"{CLAIM}-{namespace}", "labels": {"aifn.dev/test": "handler-function"}},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain",
                  "hostPath": {"path": str(MODEL_REPO_LINK), "type": "Directory"},
                  "claimRef": {"namespace": namespace, "name": CLAIM}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": CLAIM, "namespace": namespace},
         "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": f"{CLAIM}-{namespace}",
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]


def example_function(path: Path, namespace: str, name: str | None = None) -> dict[str, Any]:
    """An example AIFunction as written, in `namespace` (without its `aifn run` annotations)."""
    manifest = copy.deepcopy(yaml.safe_load(path.read_text()))
    manifest["metadata"] = {"name": name or manifest["metadata"]["name"], "namespace": namespace}
    return manifest


def code_config_map(function: dict[str, Any], source: str) -> dict[str, Any]:
    """The ConfigMap a function's `handler.configMap` names, holding `source`."""
    ref = function["spec"]["handler"]["configMap"]
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ref["name"], "namespace": function["metadata"]["namespace"]},
            "data": {ref["key"]: source}}


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition `kind` of an object's status ({} when absent)."""
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


def handler_logs(cluster: ClusterClient, namespace: str, name: str, container: str = "handler") -> str:
    """The logs of a function's container in every pod it has now."""
    return cluster.kubectl("logs", "-n", namespace, "-l", f"serving.knative.dev/service={name}", "-c", container,
                           "--tail=-1", "--prefix", check=False, timeout=30).stdout


def diagnose(cluster: ClusterClient, namespace: str, name: str) -> str:
    """What a failed wait prints: the function's objects, events and container logs."""
    out = [cluster.kubectl("get", "aifunction,ksvc,revision,pods,trigger,pingsource,broker", "-n", namespace,
                           "-o", "wide", check=False).stdout,
           cluster.kubectl("get", "aifunction", name, "-n", namespace, "-o", "jsonpath={.status.conditions}",
                           check=False).stdout,
           cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout[-3000:]]
    for container in ("handler", "triton", "queue-proxy"):
        logs = cluster.kubectl("logs", "-n", namespace, "-l", f"serving.knative.dev/service={name}", "-c", container,
                               "--tail=30", check=False)
        out.append(f"--- {container}:\n{logs.stdout}{logs.stderr}")
    return "\n".join(out)


def fresh_namespace(cluster: ClusterClient, prefix: str) -> str:
    """A new namespace whose default ServiceAccount exists (pods need it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    cluster.wait_for(f"ServiceAccount {name}/default",
                     lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0, 30)
    return name


def delete_namespace(cluster: ClusterClient, namespace: str) -> None:
    """Delete a test namespace and its model PV without waiting."""
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    cluster.kubectl("delete", "pv", f"{CLAIM}-{namespace}", "--wait=false", check=False)
