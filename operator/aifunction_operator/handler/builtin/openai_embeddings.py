"""Built-in handler: OpenAI-compatible embeddings in front of a sentence-embedding model.

`spec.handler.entrypoint: aifunction_operator.handler.builtin.openai_embeddings:lambda_handler`
(no code to ship) serves, under `aifn run` and in the cluster alike:

- `POST /v1/embeddings`: the OpenAI embeddings API (`openai_api.py` checks and shapes it);
- `GET /v1/models` and `GET /v1/models/{model}`: the function, as OpenAI lists models.

The model id is the function's name (the Triton model's name is accepted too). The model's
contract: input `text` BYTES [n, 1], outputs `embedding` FP32 [n, width] and `tokens` INT32
[n, 1] (what `model_repo/minilm` has; `tokens` counts usage with the model's own tokenizer).
A request's inputs (at most 2048) go to Triton in chunks of `BATCH` rows, sent together so that
Triton's dynamic batching runs them as few forward passes. Inputs longer than the model's
sequence length (MiniLM: 256 word pieces) are truncated by the model, as sentence-transformers
does; usage counts the word pieces embedded.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import numpy as np

from ..api import Event, HandlerContext, ProxyResponse
from ..errors import ModelUnavailable
from ..http import loads
from .openai_api import OpenAIError, embeddings_response, model_object, models_list, parse_embeddings_request

ROUTES = ("POST /v1/embeddings", "GET /v1/models", "GET /v1/models/{model}")
BATCH = 64  # rows per Triton request: model_repo/minilm/config.pbtxt's max_batch_size
CREATED = int(time.time())  # `created` of the listed model: when this process loaded the handler


async def lambda_handler(event: Event, context: HandlerContext) -> ProxyResponse:
    """Route one request; every error is answered in OpenAI's shape."""
    try:
        resource = event["resource"]
        if resource == "/v1/embeddings":
            return _json(200, await _embeddings(event, context))
        if resource == "/v1/models":
            return _json(200, models_list([context.function_name], CREATED))
        if resource == "/v1/models/{model}":
            name = event["pathParameters"]["model"]
            if name not in _served(context):
                raise OpenAIError(404, f"The model '{name}' does not exist", "model", "model_not_found")
            return _json(200, model_object(name, CREATED))
        raise OpenAIError(404, f"{event['httpMethod']} {event['path']}: this function serves {', '.join(ROUTES)}")
    except OpenAIError as error:
        return _json(error.status, error.body())
    except ModelUnavailable as exc:
        return _json(503, OpenAIError(503, str(exc), kind="server_error").body())


lambda_handler.routes = ROUTES  # type: ignore[attr-defined]  # the paths the runtime sends here (handler/routes.py)


async def _embeddings(event: Event, context: HandlerContext) -> dict[str, Any]:
    body = event.get("body") or ""
    try:
        payload = loads(base64.b64decode(body) if event.get("isBase64Encoded") else body)
    except ValueError as exc:  # binascii.Error included
        raise OpenAIError(400, f"We could not parse the JSON body of your request ({exc})") from None
    request = parse_embeddings_request(payload, _served(context))
    chunks = [request.texts[i:i + BATCH] for i in range(0, len(request.texts), BATCH)]
    results = await asyncio.gather(*(
        context.ainfer({"text": np.array([[text] for text in chunk], dtype=np.object_)}, ["embedding", "tokens"])
        for chunk in chunks
    ))
    vectors = np.concatenate([result["embedding"] for result in results])
    tokens = np.concatenate([result["tokens"].reshape(-1) for result in results])
    return embeddings_response(request, vectors, tokens.tolist())


def _served(context: HandlerContext) -> tuple[str, ...]:
    """The model ids requests may name: the function's name, and the Triton model's."""
    return tuple(dict.fromkeys((context.function_name, context.model_name)))


def _json(status: int, payload: dict[str, Any]) -> ProxyResponse:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": payload}
