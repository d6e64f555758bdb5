"""OpenAI-compatible embeddings on the cluster: examples/minilm-openai.yaml as written (the built-in
handler, no code: the handler image carries it), the minilm model read from a PVC, called through
the gateway (Host routing) by the official `openai` client.

Only the CPU request is lowered (2 -> 500m): the cluster's workers have 2 CPUs each, part of them
requested by Knative's own pods, and the handler container requests 100m besides Triton. The
image is prepared as in test_handler_function.py.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

from support.cluster.stack import GATEWAY_FILE
from support.models import minilm_weights

from .conftest import ClusterClient
from .functions import ROOT, condition, diagnose, example_function, handler_ready, model_volume

openai = pytest.importorskip("openai", reason="the openai client is a dev extra (pip install -e '.[dev]')")

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

EXAMPLE = ROOT / "examples" / "minilm-openai.yaml"
NAME = "minilm-openai"
READY_TIMEOUT = 600.0  # the example's startupTimeout (10m)
PAIRS = [
    ("A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."),
    ("How do I reset my password?", "I forgot my password, how can I change it?", "The recipe needs two cups of flour."),
]


def test_openai_client_gets_embeddings_through_the_gateway(cluster: ClusterClient, namespace: str) -> None:
    handler_ready(cluster)
    minilm_weights()  # the nodes read model_repo/ through the PV; a fresh clone has no weights until built
    gateway = GATEWAY_FILE.read_text().strip()
    volume = model_volume(namespace)
    try:
        cluster.apply(*volume)
        manifest = example_function(EXAMPLE, namespace)
        manifest["spec"]["resources"]["cpu"] = "500m"
        started = time.monotonic()
        cluster.apply(manifest)

        def ready() -> dict[str, Any] | None:
            function = cluster.get("aifunction", NAME, "-n", namespace)
            return function if condition(function, "Ready").get("status") == "True" and \
                function.get("status", {}).get("url") else None

        function = cluster.wait_for(f"AIFunction {namespace}/{NAME} Ready", ready, READY_TIMEOUT,
                                    lambda: diagnose(cluster, namespace, NAME))
        host = urlparse(function["status"]["url"]).hostname or ""
        client = openai.OpenAI(base_url=gateway.rstrip("/") + "/v1", api_key="unused", default_headers={"Host": host},
                               timeout=120, max_retries=0)
        deadline = time.monotonic() + 60  # the gateway may lag the Route's readiness by a moment
        while True:
            try:
                models = [m.id for m in client.models.list()]
                break
            except openai.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        assert models == [NAME]

        texts = [text for triple in PAIRS for text in triple]
        vectors = np.array([item.embedding for item in client.embeddings.create(model=NAME, input=texts).data])
        assert vectors.shape == (len(texts), 384)
        for i in range(len(PAIRS)):
            assert vectors[3 * i] @ vectors[3 * i + 1] > vectors[3 * i] @ vectors[3 * i + 2] + 0.3, PAIRS[i]
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model=NAME, input="x", dimensions=128)
        assert caught.value.body["param"] == "dimensions"
        print(f"\nOpenAI embeddings {namespace}/{NAME}: Ready {time.monotonic() - started:.0f}s after apply, "
              f"through {gateway}")
    finally:
        cluster.kubectl("delete", "aifunction", NAME, "-n", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", volume[0]["metadata"]["name"], "--wait=false", check=False)
