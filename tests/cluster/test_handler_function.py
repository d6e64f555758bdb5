"""A function with a handler on the cluster: examples/handlers/digits (a Lambda-style handler from a
ConfigMap) in front of the digits model read from a PVC, as the operator renders it: the handler
runtime image built from images/handler/Dockerfile (support.cluster.handler_image, buildah, no
Docker) as the Knative Service's serving container, Triton as its second container, probed by
Knative (multi-container-probing). It becomes Ready and classifies digits sent to `POST /` through
the gateway (Host routing).

The image is imported into both nodes under its localhost/ and dev.local/ names when they lack it
(what the stack's image import does once it includes it). The operator must run functions with
the dev.local name (`--set operator.handlerImage=dev.local/aifn/aifn-handler:0.1.0`, AIFN_HANDLER_IMAGE):
when the stack's release does not set it (the chart's default), this test sets it with
`helm upgrade --reuse-values`; any other value is a failure naming the setting.
"""

from __future__ import annotations

import copy
import http.client
import json
import time
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits

from support.cluster import images
from support.cluster.handler_image import HANDLER_IMAGE, handler_image_archive
from support.cluster.layout import MODEL_REPO_LINK, NODES
from support.cluster.stack import (CHART, GATEWAY_FILE, OPERATOR_NAMESPACE, OPERATOR_RELEASE, revision_image,
                                   tag_for_revisions)
from support.helm import helm

from .conftest import ClusterClient

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = CHART.parents[1]
EXAMPLE = ROOT / "examples" / "handlers" / "digits"
NAME = "digits-handler"
CLAIM = "aifn-models"
REVISION_IMAGE = revision_image(HANDLER_IMAGE)  # dev.local/aifn/aifn-handler:0.1.0
READY_TIMEOUT = 300.0  # the example's startupTimeout (5m); about 35 s on this cluster


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


def model_volume(namespace: str) -> list[dict[str, Any]]:
    """A hostPath PV on the nodes' model repository, pre-bound to the PVC the example reads (as tests/e2e)."""
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


def function_manifest(namespace: str) -> dict[str, Any]:
    """examples/handlers/digits/digits-handler.yaml in `namespace`, 500m of CPU (what the CPU worker has left)."""
    manifest = copy.deepcopy(yaml.safe_load((EXAMPLE / "digits-handler.yaml").read_text()))
    manifest["metadata"] = {"name": NAME, "namespace": namespace}  # without the `aifn run` annotations
    manifest["spec"]["resources"]["cpu"] = "500m"
    return manifest


def condition(function: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (function.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


def post(gateway: str, host: str, body: bytes) -> tuple[int, bytes]:
    url = urlparse(gateway)
    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
    try:
        connection.request("POST", "/", body=body, headers={"Host": host, "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def diagnose(cluster: ClusterClient, namespace: str) -> str:
    out = [cluster.kubectl("get", "aifunction,ksvc,revision,pods", "-n", namespace, "-o", "wide", check=False).stdout,
           cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout[-3000:]]
    for container in ("handler", "triton", "queue-proxy"):
        logs = cluster.kubectl("logs", "-n", namespace, "-l", f"serving.knative.dev/service={NAME}", "-c", container,
                               "--tail=30", check=False)
        out.append(f"--- {container}:\n{logs.stdout}{logs.stderr}")
    return "\n".join(out)


def test_handler_function_is_ready_and_answers_through_the_gateway(cluster: ClusterClient, namespace: str) -> None:
    log: list[str] = []
    began = time.monotonic()
    import_handler_image(log)
    ensure_operator_handler_image(cluster, log)
    print("\n".join([*log, f"handler image and operator setting checked in {time.monotonic() - began:.0f}s"]))
    gateway = GATEWAY_FILE.read_text().strip()
    volume = model_volume(namespace)
    try:
        cluster.apply(*volume)
        code = (EXAMPLE / "handler.py").read_text()
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": namespace},
                       "data": {"handler.py": code}})
        started = time.monotonic()
        cluster.apply(function_manifest(namespace))

        def ready() -> dict[str, Any] | None:
            function = cluster.get("aifunction", NAME, "-n", namespace)
            return function if condition(function, "Ready").get("status") == "True" and \
                function.get("status", {}).get("url") else None

        function = cluster.wait_for(f"AIFunction {namespace}/{NAME} Ready", ready, READY_TIMEOUT,
                                    lambda: diagnose(cluster, namespace))
        to_ready = time.monotonic() - started

        # The Knative Service as rendered: the handler serves, Triton is the second container, probed.
        service = cluster.get("ksvc", NAME, "-n", namespace)
        containers = service["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["handler", "triton"]
        handler, triton = containers
        assert handler["image"] == REVISION_IMAGE
        assert [p["containerPort"] for p in handler["ports"]] == [8080]
        assert handler["securityContext"]["runAsUser"] == 1000
        assert "ports" not in triton, "a sidecar has no serving port"
        assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
        assert triton["livenessProbe"]["httpGet"]["port"] == 8000
        pods = cluster.get("pods", "-n", namespace, "-l", f"serving.knative.dev/service={NAME}")["items"]
        assert pods, "a Ready function with minReplicas 0 keeps its first pod for a while"
        pod = pods[0]
        assert {s["name"]: s["ready"] for s in pod["status"]["containerStatuses"]} == \
            {"handler": True, "triton": True, "queue-proxy": True}
        queue = next(c for c in pod["spec"]["containers"] if c["name"] == "queue-proxy")
        env = {e["name"]: e.get("value") for e in queue["env"]}
        assert env.get("ENABLE_MULTI_CONTAINER_PROBES") == "true", "Knative's multi-container-probing is off"
        probes = json.loads(env["SERVING_READINESS_PROBE"])
        assert sorted(p["httpGet"]["port"] for p in probes) == [8000, 8080], probes

        # POST / through the gateway: the handler calls Triton on localhost and answers for the model.
        digits = load_digits()
        picks = np.arange(0, len(digits.target), len(digits.target) // 20)[:20]
        host = urlparse(function["status"]["url"]).hostname or ""
        single = json.dumps({"pixels": digits.images[picks[0]].reshape(-1).tolist()}).encode()
        deadline = time.monotonic() + 60  # the gateway may lag the Route's readiness by a moment
        while True:
            status, body = post(gateway, host, single)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        first_answer = time.monotonic() - started
        assert status == 200, f"POST / through {gateway} (Host {host}): {status} {body[:500]!r}\n" + \
            diagnose(cluster, namespace)
        answer = json.loads(body)
        assert answer["label"] == int(digits.target[picks[0]]) and 0.5 < answer["confidence"] <= 1.0, answer

        batch = json.dumps({"images": [digits.images[i].reshape(-1).tolist() for i in picks]}).encode()
        status, body = post(gateway, host, batch)
        assert status == 200, body[:500]
        labels = [p["label"] for p in json.loads(body)["predictions"]]
        correct = sum(label == int(digits.target[i]) for label, i in zip(labels, picks))
        assert correct >= len(picks) - 1, f"{correct}/{len(picks)} digits right: {labels}"

        status, body = post(gateway, host, b"not json")  # refused before the handler, with the reason
        assert status == 400 and b"not valid JSON" in body, (status, body[:300])
        print(f"\nhandler function {namespace}/{NAME}: Ready {to_ready:.0f}s after apply, first answer at "
              f"{first_answer:.0f}s, {correct}/{len(picks)} digits right through {gateway}")
    finally:
        cluster.kubectl("delete", "aifunction", NAME, "-n", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", volume[0]["metadata"]["name"], "--wait=false", check=False)
