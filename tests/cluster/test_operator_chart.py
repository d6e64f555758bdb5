"""The chart's operator Deployment as a pod: image built from our Dockerfile (buildah, no Docker), installed
with the real helm, Running and Ready under the chart's hardening, reconciling an AIFunction through the
`kubernetes` Service (pod -> ClusterIP -> apiserver).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from support.cluster.images import import_archive
from support.cluster.layout import NODES
from support.cluster.operator_image import OPERATOR_IMAGE, operator_image_archive
from support.helm import CHART, helm
from support.kube_client import TestClient, function
from support.operator_process import wait_for

from .conftest import ClusterClient

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
RELEASE, RELEASE_NAMESPACE = "aifn", "aifn-system"


@pytest.fixture(scope="module")
def operator_release(cluster: ClusterClient) -> Iterator[dict[str, Any]]:
    """The operator image in every node's containerd and the chart installed with it (helm --wait)."""
    archive = operator_image_archive()
    for node in NODES:
        import_archive(archive, OPERATOR_IMAGE, node.containerd_socket)
    repository, tag = OPERATOR_IMAGE.rsplit(":", 1)
    helm("install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--create-namespace",
         "--set", f"image.repository={repository}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
         "--set", "crds.install=false",  # the cluster has them already (installed with the control plane)
         "--wait", "--timeout", "3m", kubeconfig=cluster.kubeconfig, timeout=240)
    try:
        pods = cluster.get("pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/name=aifunction-operator")
        yield pods["items"][0]
    finally:
        logs = cluster.kubectl("logs", "-n", RELEASE_NAMESPACE, "deploy/aifn-aifunction-operator", "--tail=40",
                               check=False)
        print(logs.stdout or logs.stderr)
        helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait", kubeconfig=cluster.kubeconfig,
             check=False, timeout=180)


def test_the_operator_runs_as_the_charts_pod(cluster: ClusterClient, operator_release: dict[str, Any]) -> None:
    pod = operator_release
    assert pod["status"]["phase"] == "Running"
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])
    container = pod["spec"]["containers"][0]
    assert container["image"] == OPERATOR_IMAGE
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["nodeName"] == NODES[0].name, "the untainted CPU worker"
    user = cluster.kubectl("exec", "-n", RELEASE_NAMESPACE, pod["metadata"]["name"], "--", "id", "-u").stdout
    assert user.strip() == "65532"


def test_the_operator_pod_reconciles_a_function(
    cluster: ClusterClient, namespace: str, operator_release: dict[str, Any]
) -> None:
    kube = TestClient(cluster.kubeconfig)
    kube.create_function(namespace, function("digits"))
    service = wait_for("the Knative Service the operator pod applies", lambda: kube.get_service(namespace, "digits"),
                       60)
    assert service["metadata"]["ownerReferences"][0]["kind"] == "AIFunction"
    managers = {entry["manager"] for entry in service["metadata"]["managedFields"]}
    assert "aifn-operator" in managers, managers
    fn = wait_for("the function's status from the operator pod",
                  lambda: (f := kube.get_function(namespace, "digits")) and f.get("status", {}).get("conditions") and f,
                  60)
    assert {c["type"] for c in fn["status"]["conditions"]} >= {"Ready"}
    print(json.dumps(fn["status"], indent=1)[:1500])
