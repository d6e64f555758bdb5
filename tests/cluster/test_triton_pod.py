"""The digits function's pod as `aifn render` writes it, on a real node: Triton 2.51 from an image built
here (no Docker), run as uid 1000 with the rendered securityContext, /dev/shm, probes and args,
model_repo/ from a hostPath PersistentVolume behind the `aifn-models` claim (as tests/e2e does),
answering inferences through a ClusterIP Service.

Without Knative (next issue) the Revision's pod is a Deployment made from the rendered template.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from support.cluster.images import build_archive, import_archive
from support.cluster.layout import MODEL_REPO_LINK, NODES
from support.cluster.triton_image import IMAGE_NAME, triton_image_spec

from .conftest import ClusterClient
from .revisions import revision_labels, revision_pod_spec

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
CPU_NODE = NODES[0]


@pytest.fixture(scope="module")
def triton_image(cluster: ClusterClient) -> str:
    """localhost/aifn/tritonserver:2.51-cpu in the CPU worker's containerd (built once, cached).

    4.8 GiB, twice that once unpacked: loaded only where this test's pod runs (`make cluster` loads
    it into every node).
    """
    archive = build_archive(triton_image_spec())
    import_archive(archive, IMAGE_NAME, CPU_NODE.containerd_socket)
    return IMAGE_NAME


def rendered_service(image: str) -> dict[str, Any]:
    """`aifn render` of examples/digits.yaml with the image built here, as a user runs it."""
    function = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    function["spec"].setdefault("runtime", {})["image"] = image
    result = subprocess.run([sys.executable, "-m", "aifunction_operator", "render", "-f", "-", "-o", "json"],
                            input=yaml.safe_dump(function), capture_output=True, text=True, check=True)
    rendered = json.loads(result.stdout)
    objects = rendered.get("items", [rendered]) if isinstance(rendered, dict) else rendered
    return next(o for o in objects if o["kind"] == "Service")


def model_volume(namespace: str) -> list[dict[str, Any]]:
    """model_repo/ as the `aifn-models` claim, a read-only hostPath volume at kind-config.yaml's path."""
    pv_name = f"aifn-models-{namespace}"
    return [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                  "hostPath": {"path": str(MODEL_REPO_LINK), "type": "Directory"},  # as kind-config.yaml
                  "claimRef": {"namespace": namespace, "name": "aifn-models"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "aifn-models", "namespace": namespace},
         "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": pv_name,
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]


@pytest.fixture
def digits_deployment(cluster: ClusterClient, namespace: str, triton_image: str) -> Iterator[dict[str, Any]]:
    service = rendered_service(triton_image)
    labels = revision_labels(service)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "digits-00001-deployment", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"serving.knative.dev/revision": "digits-00001"}},
                 "template": {"metadata": {"labels": labels}, "spec": revision_pod_spec(service)}},
    }
    port = service["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    ksvc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "digits", "namespace": namespace},
            "spec": {"selector": {"serving.knative.dev/revision": "digits-00001"},
                     "ports": [{"name": "http", "port": 80, "targetPort": port}]}}
    cluster.apply(*model_volume(namespace), deployment, ksvc)
    yield {"service": service, "deployment": deployment}
    cluster.kubectl("delete", "pv", f"aifn-models-{namespace}", "--wait=false", check=False)


def test_the_rendered_digits_pod_serves_through_a_service(cluster: ClusterClient, namespace: str,
                                                          digits_deployment: dict[str, Any]) -> None:
    import tritonclient.http as httpclient
    from sklearn.datasets import load_digits

    def ready_pod() -> dict[str, Any] | None:
        pods = cluster.get("pods", "-n", namespace, "-l", "serving.knative.dev/revision=digits-00001")["items"]
        return next((p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in p["status"].get("conditions", []))), None)

    pod = cluster.wait_for("the digits pod Ready (Triton loaded the model)", ready_pod, 300,
                           lambda: cluster.kubectl("describe", "pods", "-n", namespace, check=False).stdout[-4000:]
                           + cluster.kubectl("logs", "-n", namespace, "deploy/digits-00001-deployment", "--tail=30",
                                             check=False).stdout)
    assert pod["spec"]["nodeName"] == CPU_NODE.name
    rendered = digits_deployment["service"]["spec"]["template"]["spec"]["containers"][0]
    running = pod["spec"]["containers"][0]
    assert running["args"] == rendered["args"] and running["command"] == rendered["command"]
    assert running["securityContext"] == rendered["securityContext"]
    assert cluster.kubectl("exec", "-n", namespace, pod["metadata"]["name"], "--", "id", "-u").stdout.strip() == "1000"
    shm = cluster.kubectl("exec", "-n", namespace, pod["metadata"]["name"], "--", "df", "-k", "/dev/shm").stdout
    assert "tmpfs" in shm or "shm" in shm, shm

    cluster_ip = cluster.get("service", "digits", "-n", namespace)["spec"]["clusterIP"]
    client = httpclient.InferenceServerClient(f"{cluster_ip}:80")
    try:
        digits = load_digits()
        images = digits.images.astype(np.float32)
        tensor = httpclient.InferInput("image", list(images[:128].shape), "FP32")
        tensor.set_data_from_numpy(images[:128])
        labels = client.infer("digits", [tensor]).as_numpy("label")[:, 0]
        accuracy = float((labels == digits.target[:128]).mean())
        assert accuracy >= 0.97, f"accuracy {accuracy:.3f} through the Service"
        # The admin APIs stay closed through the function's address.
        unload = urllib.request.Request(f"http://{cluster_ip}/v2/repository/models/digits/unload", data=b"{}",
                                        method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unload, timeout=30)
        assert 400 <= refused.value.code < 500, f"unload through the Service answered {refused.value.code}"
        assert client.is_model_ready("digits")
    finally:
        client.close()
