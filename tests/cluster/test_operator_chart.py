"""The chart's operator Deployment as a pod, as `make cluster` installs it: the image built from our
Dockerfile (buildah, no Docker), installed with the real helm (support.cluster.stack), Running and
Ready under the chart's hardening, reconciling an AIFunction through the `kubernetes` Service
(pod -> ClusterIP -> apiserver).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.cluster.layout import NODES
from support.cluster.operator_image import OPERATOR_IMAGE
from support.cluster.stack import OPERATOR_NAMESPACE as RELEASE_NAMESPACE, OPERATOR_RELEASE as RELEASE
from support.helm import helm
from support.kube_client import TestClient, function
from support.processes import wait_until

from .conftest import ClusterClient

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def operator_release(cluster: ClusterClient) -> dict[str, Any]:
    """The operator pod of the release the cluster's stack installed with helm."""
    status = json.loads(helm("status", RELEASE, "--namespace", RELEASE_NAMESPACE, "-o", "json",
                             kubeconfig=cluster.kubeconfig).stdout)
    assert status["info"]["status"] == "deployed", status["info"]
    pods = cluster.get("pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/name=aifunction-operator")
    assert len(pods["items"]) == 1, [p["metadata"]["name"] for p in pods["items"]]
    return pods["items"][0]


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
    service = wait_until("the Knative Service the operator pod applies", lambda: kube.get_service(namespace, "digits"),
                         60)
    assert service["metadata"]["ownerReferences"][0]["kind"] == "AIFunction"
    managers = {entry["manager"] for entry in service["metadata"]["managedFields"]}
    assert "aifn-operator" in managers, managers
    fn = wait_until("the function's status from the operator pod",
                    lambda: (f := kube.get_function(namespace, "digits")) and f.get("status", {}).get("conditions") and f,
                    60)
    assert {c["type"] for c in fn["status"]["conditions"]} >= {"Ready"}
    print(json.dumps(fn["status"], indent=1)[:1500])
