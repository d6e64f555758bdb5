"""The OpenAI embeddings API's checks and shapes (handler/builtin/openai_api.py), case by case."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from aifunction_operator.handler.builtin.openai_api import (
    MAX_INPUTS,
    EmbeddingsRequest,
    OpenAIError,
    embeddings_response,
    models_list,
    parse_embeddings_request,
)

SERVED = ("minilm-openai", "minilm")
OK = {"model": "minilm-openai", "input": "hello"}

VALID = [
    ("one string", OK, EmbeddingsRequest(("hello",), "minilm-openai")),
    ("a list", {**OK, "input": ["a", "b"]}, EmbeddingsRequest(("a", "b"), "minilm-openai")),
    ("the Triton model's name", {**OK, "model": "minilm"}, EmbeddingsRequest(("hello",), "minilm")),
    ("base64", {**OK, "encoding_format": "base64"}, EmbeddingsRequest(("hello",), "minilm-openai", "base64")),
    ("dimensions and user", {**OK, "dimensions": 384, "user": "u1"},
     EmbeddingsRequest(("hello",), "minilm-openai", "float", 384)),
    ("the most inputs", {**OK, "input": ["x"] * MAX_INPUTS}, EmbeddingsRequest(("x",) * MAX_INPUTS, "minilm-openai")),
]

# (case, body, status, param, code, words in the message)
INVALID: list[tuple[str, Any, int, str | None, str | None, str]] = [
    ("not an object", ["hello"], 400, None, None, "must be a JSON object, not an array"),
    ("an unknown field", {**OK, "temperature": 1}, 400, "temperature", None, "Unrecognized request argument"),
    ("no model", {"input": "x"}, 400, "model", None, "must provide a model"),
    ("a model that is a number", {**OK, "model": 3}, 400, "model", None, "must provide a model"),
    ("an unknown model", {**OK, "model": "gpt-4"}, 404, "model", "model_not_found", "'gpt-4' does not exist"),
    ("no input", {"model": "minilm"}, 400, "input", None, "'input' is a required property"),
    ("input a number", {**OK, "input": 3}, 400, "input", None, "not a number"),
    ("input an object", {**OK, "input": {"a": 1}}, 400, "input", None, "not an object"),
    ("an empty list", {**OK, "input": []}, 400, "input", None, "empty array"),
    ("too many inputs", {**OK, "input": ["x"] * (MAX_INPUTS + 1)}, 400, "input", None, f"at most {MAX_INPUTS}"),
    ("tokens", {**OK, "input": [15339, 1917]}, 400, "input", None, "token arrays is not supported"),
    ("token arrays", {**OK, "input": [[15339], [1917, 2]]}, 400, "input", None, "token arrays is not supported"),
    ("a number among strings", {**OK, "input": ["a", 2]}, 400, "input", None, "input[1] must be a string"),
    ("an empty string", {**OK, "input": ["a", ""]}, 400, "input", None, "input[1] is an empty string"),
    ("an unknown encoding", {**OK, "encoding_format": "int8"}, 400, "encoding_format", None, "'float', 'base64'"),
    ("dimensions zero", {**OK, "dimensions": 0}, 400, "dimensions", None, "positive integer"),
    ("dimensions a string", {**OK, "dimensions": "384"}, 400, "dimensions", None, "positive integer"),
    ("dimensions a boolean", {**OK, "dimensions": True}, 400, "dimensions", None, "positive integer"),
    ("user a number", {**OK, "user": 7}, 400, "user", None, "user must be a string"),
]


@pytest.mark.parametrize(("case", "body", "expected"), VALID, ids=[c[0] for c in VALID])
def test_valid_requests(case: str, body: dict[str, Any], expected: EmbeddingsRequest) -> None:
    assert parse_embeddings_request(body, SERVED) == expected


@pytest.mark.parametrize(("case", "body", "status", "param", "code", "words"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_requests_get_openai_errors(case: str, body: Any, status: int, param: str | None, code: str | None,
                                            words: str) -> None:
    with pytest.raises(OpenAIError) as caught:
        parse_embeddings_request(body, SERVED)
    error = caught.value.body()["error"]
    assert (caught.value.status, error["type"], error["param"], error["code"]) == (status, "invalid_request_error", param, code)
    assert words in error["message"]


VECTORS = np.array([[0.6, 0.8, 0.0], [1.0, 0.0, -0.25]], dtype=np.float32)


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_response_shape(encoding: str) -> None:
    request = EmbeddingsRequest(("a", "b"), "minilm-openai", encoding)
    body = embeddings_response(request, VECTORS, [3, 4])
    assert body["object"] == "list" and body["model"] == "minilm-openai"
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", 0), ("embedding", 1)]
    for row, item in zip(VECTORS, body["data"]):
        got = item["embedding"]
        if encoding == "base64":  # little-endian float32, as the openai client decodes it
            got = np.frombuffer(base64.b64decode(got), dtype="<f4")
        np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), row)


@pytest.mark.parametrize(("dimensions", "refused"), [(None, False), (3, False), (2, True), (512, True)])
def test_dimensions_other_than_the_models_are_refused(dimensions: int | None, refused: bool) -> None:
    request = EmbeddingsRequest(("a", "b"), "minilm", "float", dimensions)
    if not refused:
        assert len(embeddings_response(request, VECTORS, [1, 1])["data"][0]["embedding"]) == 3
        return
    with pytest.raises(OpenAIError) as caught:
        embeddings_response(request, VECTORS, [1, 1])
    assert (caught.value.status, caught.value.param) == (400, "dimensions")
    assert "3-dimensional" in caught.value.message


def test_models_list() -> None:
    assert models_list(["minilm-openai"], 1700000000) == {
        "object": "list", "data": [{"id": "minilm-openai", "object": "model", "created": 1700000000, "owned_by": "aifn"}]}
