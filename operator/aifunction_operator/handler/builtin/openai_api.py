"""The OpenAI embeddings API's requests, responses and errors, as plain values (no I/O).

Follows https://platform.openai.com/docs/api-reference/embeddings: a request is
`{"input": str | [str], "model": str, "encoding_format"?: "float" | "base64",
"dimensions"?: int, "user"?: str}`; the answer is `{"object": "list", "data": [{"object":
"embedding", "index": i, "embedding": [...] or base64}], "model", "usage": {"prompt_tokens",
"total_tokens"}}`; an error is `{"error": {"message", "type", "param", "code"}}`. What the
model cannot do is refused with a 400 naming the parameter: token arrays as `input` (the
model has its own WordPiece vocabulary, not OpenAI's tokens) and `dimensions` other than the
model's width (MiniLM's embeddings are not trained to be shortened).
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_INPUTS = 2048  # OpenAI's limit of inputs per request
ENCODINGS = ("float", "base64")
FIELDS = ("input", "model", "encoding_format", "dimensions", "user")


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A valid `POST /v1/embeddings` request."""

    texts: tuple[str, ...]
    model: str
    encoding_format: str = "float"
    dimensions: int | None = None


def parse_embeddings_request(payload: Any, served: Collection[str]) -> EmbeddingsRequest:
    """Check a parsed JSON body; OpenAIError (400, or 404 for a model not in `served`) naming the parameter."""
    if not isinstance(payload, dict):
        raise OpenAIError(400, f"the request body must be a JSON object, not {_json_type(payload)}")
    unknown = [name for name in payload if name not in FIELDS]
    if unknown:
        raise OpenAIError(400, f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "you must provide a model parameter (a string)", "model")
    if model not in served:
        raise OpenAIError(404, f"The model '{model}' does not exist; this function serves {_names(served)}",
                          "model", "model_not_found")
    encoding = payload.get("encoding_format", "float")
    if encoding not in ENCODINGS:
        raise OpenAIError(400, f"encoding_format {encoding!r} is not one of 'float', 'base64'", "encoding_format")
    dimensions = payload.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise OpenAIError(400, f"dimensions must be a positive integer, not {dimensions!r}", "dimensions")
    user = payload.get("user")
    if user is not None and not isinstance(user, str):
        raise OpenAIError(400, f"user must be a string, not {_json_type(user)}", "user")
    return EmbeddingsRequest(_texts(payload.get("input")), model, encoding, dimensions)


def embeddings_response(request: EmbeddingsRequest, vectors: np.ndarray, tokens: Sequence[int]) -> dict[str, Any]:
    """The answer for `vectors` [n, width] (one row per input) and the tokens counted per input;
    OpenAIError (400) when `dimensions` asked for another width."""
    width = vectors.shape[1]
    if request.dimensions is not None and request.dimensions != width:
        raise OpenAIError(400, f"dimensions {request.dimensions} is not supported: model '{request.model}' makes "
                               f"{width}-dimensional embeddings and cannot shorten them (omit dimensions, or pass {width})",
                          "dimensions")
    rows = vectors.astype("<f4", copy=False)
    data = [{"object": "embedding", "index": i, "embedding": _encode(row, request.encoding_format)}
            for i, row in enumerate(rows)]
    used = int(sum(tokens))
    return {"object": "list", "data": data, "model": request.model,
            "usage": {"prompt_tokens": used, "total_tokens": used}}


def model_object(name: str, created: int) -> dict[str, Any]:
    """One entry of `GET /v1/models` (and the answer of `GET /v1/models/{model}`)."""
    return {"id": name, "object": "model", "created": created, "owned_by": "aifn"}


def models_list(names: Sequence[str], created: int) -> dict[str, Any]:
    """The answer of `GET /v1/models`."""
    return {"object": "list", "data": [model_object(name, created) for name in names]}


def _texts(value: Any) -> tuple[str, ...]:
    if value is None:
        raise OpenAIError(400, "'input' is a required property", "input")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise OpenAIError(400, f"input must be a string or an array of strings, not {_json_type(value)}", "input")
    if not items:
        raise OpenAIError(400, "input is an empty array; give at least one string", "input")
    if len(items) > MAX_INPUTS:
        raise OpenAIError(400, f"input has {len(items)} items; at most {MAX_INPUTS} inputs per request", "input")
    if all(_is_token(item) for item in items) or all(isinstance(item, list) and all(map(_is_token, item)) for item in items):
        raise OpenAIError(400, "input as token arrays is not supported: this model tokenizes text itself; "
                               "send strings", "input")
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise OpenAIError(400, f"input[{index}] must be a string, not {_json_type(item)}", "input")
        if not item:
            raise OpenAIError(400, f"input[{index}] is an empty string", "input")
    return tuple(items)


def _encode(row: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # little-endian float32 bytes, as OpenAI sends them
        return base64.b64encode(row.tobytes()).decode("ascii")
    return row.tolist()


def _is_token(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool)


def _json_type(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return "null"


def _names(served: Collection[str]) -> str:
    return ", ".join(f"'{name}'" for name in served)
