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

import http.client
import json
import time
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from sklearn.datasets import load_digits

from support.cluster.stack import GATEWAY_FILE

from .conftest import ClusterClient
from .functions import HANDLER_EXAMPLES, REVISION_IMAGE, condition, diagnose, example_function, handler_ready, model_volume

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

EXAMPLE = HANDLER_EXAMPLES / "digits"
NAME = "digits-handler"
READY_TIMEOUT = 300.0  # the example's startupTimeout (5m); about 35 s on this cluster


def post(gateway: str, host: str, body: bytes) -> tuple[int, bytes]:
    url = urlparse(gateway)
    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
    try:
        connection.request("POST", "/", body=body, headers={"Host": host, "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_handler_function_is_ready_and_answers_through_the_gateway(cluster: ClusterClient, namespace: str) -> None:
    handler_ready(cluster)
    gateway = GATEWAY_FILE.read_text().strip()
    volume = model_volume(namespace)
    try:
        cluster.apply(*volume)
        code = (EXAMPLE / "handler.py").read_text()
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": namespace},
                       "data": {"handler.py": code}})
        started = time.monotonic()
        cluster.apply(example_function(EXAMPLE / "digits-handler.yaml", namespace))

        def ready() -> dict[str, Any] | None:
            function = cluster.get("aifunction", NAME, "-n", namespace)
            return function if condition(function, "Ready").get("status") == "True" and \
                function.get("status", {}).get("url") else None

        function = cluster.wait_for(f"AIFunction {namespace}/{NAME} Ready", ready, READY_TIMEOUT,
                                    lambda: diagnose(cluster, namespace, NAME))
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
            diagnose(cluster, namespace, NAME)
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
