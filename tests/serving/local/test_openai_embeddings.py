"""OpenAI-compatible embeddings, with the official `openai` client as the caller and a real Triton:

- `aifn run examples/minilm-openai.yaml` (the built-in handler inside `aifn run`'s gateway);
- the cluster's handler container (`python -m aifunction_operator.handler`, kserve's server)
  with the same built-in handler, its model calls going to that `aifn run`'s Triton.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support.models import minilm_weights
from support.processes import free_port, wait_until

from .conftest import LocalRun, http, triton_or_skip

openai = pytest.importorskip("openai", reason="the openai client is a dev extra (pip install -e '.[dev]')")

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(600)]

FUNCTION = Path(__file__).resolve().parents[3] / "examples" / "minilm-openai.yaml"
NAME = "minilm-openai"
ENTRYPOINT = "aifunction_operator.handler.builtin.openai_embeddings:lambda_handler"
# (anchor, paraphrase, unrelated): the paraphrase must be the closer one.
PAIRS = [
    ("A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch.", "Interest rates were raised by the central bank."),
    ("How do I reset my password?", "I forgot my password, how can I change it?", "The recipe needs two cups of flour."),
    ("It is raining heavily outside.", "There is a downpour outdoors.", "She plays the violin in an orchestra."),
    ("The train to Berlin is delayed.", "Our rail connection to Berlin is running late.", "He planted tomatoes in the garden."),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """`aifn run examples/minilm-openai.yaml`, as the example's comment says, for the whole module."""
    triton_or_skip()
    minilm_weights()
    logs = tmp_path_factory.mktemp("openai-run")
    port = free_port()
    with open(logs / "run.log", "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aifunction_operator", "run", str(FUNCTION), "--port", str(port), "--log-dir", str(logs)],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    local = LocalRun(proc, f"http://127.0.0.1:{port}", logs / "run.log")

    def live() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"aifn run exited with {proc.returncode}:\n{local.log()}")
        try:
            return http("GET", local.url + "/v2/health/live", timeout=1).status == 200
        except OSError:
            return False

    wait_until("the gateway to answer /v2/health/live", live, 30, diagnose=lambda: local.log()[-3000:])
    yield local
    assert local.stop() == 0, local.log()[-3000:]


@pytest.fixture(scope="module")
def client(run: LocalRun) -> "openai.OpenAI":
    return openai.OpenAI(base_url=run.url + "/v1", api_key="unused", timeout=240, max_retries=0)


def test_models_are_listed_and_retrieved(client: "openai.OpenAI") -> None:
    assert [m.id for m in client.models.list()] == [NAME]
    assert client.models.retrieve(NAME).owned_by == "aifn"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4")
    assert caught.value.body["code"] == "model_not_found"


def test_paraphrases_rank_above_unrelated_sentences(client: "openai.OpenAI") -> None:
    texts = [text for triple in PAIRS for text in triple]
    answer = client.embeddings.create(model=NAME, input=texts)  # the client asks for base64 and decodes it
    vectors = np.array([item.embedding for item in answer.data])
    assert vectors.shape == (len(texts), 384) and [item.index for item in answer.data] == list(range(len(texts)))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    for i, (anchor, paraphrase, unrelated) in enumerate(PAIRS):
        close, far = vectors[3 * i] @ vectors[3 * i + 1], vectors[3 * i] @ vectors[3 * i + 2]
        print(f"cos({anchor!r}, paraphrase) = {close:.3f}, unrelated = {far:.3f}")
        assert close > far + 0.3, f"{anchor!r}: paraphrase {close:.3f} is not well above unrelated {far:.3f}"
    as_floats = client.embeddings.create(model=NAME, input=texts, encoding_format="float")
    np.testing.assert_array_equal(np.array([item.embedding for item in as_floats.data], dtype=np.float32),
                                  vectors.astype(np.float32))


def test_usage_counts_the_models_word_pieces(client: "openai.OpenAI") -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_weights())
    long_text = "word " * 1000  # longer than the model's 256 word pieces: truncated, as sentence-transformers does
    texts = ["A man is eating food.", "Tokenization counts word pieces, not words.", long_text]
    answer = client.embeddings.create(model=NAME, input=texts)
    pieces = [len(tokenizer(text, truncation=True, max_length=256)["input_ids"]) - 2 for text in texts]
    assert pieces[2] == 254
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == sum(pieces)


def test_many_inputs_are_batched_in_order(client: "openai.OpenAI") -> None:
    """130 inputs: three Triton requests of at most 64 rows; each row is the embedding of its own text."""
    texts = [f"Sentence number {i} is about topic {i % 7}." for i in range(130)]
    many = np.array([item.embedding for item in client.embeddings.create(model=NAME, input=texts).data])
    for i in (0, 63, 64, 129):
        one = np.array(client.embeddings.create(model=NAME, input=texts[i]).data[0].embedding)
        np.testing.assert_allclose(many[i], one, atol=1e-5)


# (case, arguments to embeddings.create, status, param)
BAD = [
    ("an unknown model", {"model": "text-embedding-3-small", "input": "x"}, 404, "model"),
    ("token arrays", {"model": NAME, "input": [[15339, 1917]]}, 400, "input"),
    ("an empty list", {"model": NAME, "input": []}, 400, "input"),
    ("an empty string", {"model": NAME, "input": ""}, 400, "input"),
    ("too many inputs", {"model": NAME, "input": ["x"] * 2049}, 400, "input"),
    ("shortened dimensions", {"model": NAME, "input": "x", "dimensions": 256}, 400, "dimensions"),
    ("an unknown field", {"model": NAME, "input": "x", "extra_body": {"truncate": True}}, 400, "truncate"),
]


@pytest.mark.parametrize(("case", "arguments", "status", "param"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_an_openai_error(client: "openai.OpenAI", case: str, arguments: dict, status: int, param: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(**arguments)
    error = caught.value.body  # the client unwraps {"error": {...}}
    assert caught.value.status_code == status
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error
    assert error["message"]


def test_a_malformed_body_gets_an_openai_error(run: LocalRun) -> None:
    reply = run.post("/v1/embeddings", b'{"model": "minilm-openai", "input": ')
    assert reply.status == 400
    assert reply.json()["error"]["type"] == "invalid_request_error" and "could not parse" in reply.json()["error"]["message"]


def test_the_cluster_runtime_serves_the_same_endpoints(run: LocalRun, tmp_path: Path) -> None:
    """The handler container's command and environment (render/handler.py), its Triton being `aifn run`'s."""
    port = free_port()
    env = {**os.environ, "AIFN_HANDLER_ENTRYPOINT": ENTRYPOINT, "AIFN_HANDLER_PATH": str(tmp_path),
           "AIFN_TRITON_URL": run.url.removeprefix("http://"), "AIFN_MODEL_NAME": "minilm",
           "AIFN_FUNCTION_NAME": NAME, "PORT": str(port)}
    with open(tmp_path / "handler.log", "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "aifunction_operator.handler"], env=env, stdout=sink,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log() -> str:
        return (tmp_path / "handler.log").read_text(errors="replace")[-3000:]

    try:
        def ready() -> bool:
            assert proc.poll() is None, f"the handler exited with {proc.returncode}:\n{log()}"
            try:
                return http("GET", f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status == 200
            except OSError:
                return False

        wait_until("the handler's /v2/health/ready", ready, 120, interval=0.3, diagnose=log)
        cluster = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=240, max_retries=0)
        assert [m.id for m in cluster.models.list()] == [NAME]
        texts = [PAIRS[0][0], PAIRS[0][1]]
        here = np.array([item.embedding for item in cluster.embeddings.create(model=NAME, input=texts).data])
        local = np.array([item.embedding for item in openai.OpenAI(
            base_url=run.url + "/v1", api_key="unused", max_retries=0).embeddings.create(model=NAME, input=texts).data])
        np.testing.assert_allclose(here, local, atol=1e-6)
        with pytest.raises(openai.BadRequestError) as caught:
            cluster.embeddings.create(model=NAME, input=[1, 2, 3])
        assert caught.value.body["param"] == "input"
        reply = http("POST", f"http://127.0.0.1:{port}/v1/embeddings", b"{", {"Content-Type": "application/json"})
        assert reply.status == 400 and json.loads(reply.body)["error"]["type"] == "invalid_request_error"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
