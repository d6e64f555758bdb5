"""Routes a Lambda-style function declares (handler/routes.py): parsing, matching, and the event they produce."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from aifunction_operator.handler.errors import HandlerLoadError
from aifunction_operator.handler.http import HttpRequest
from aifunction_operator.handler.invoker import FunctionInvoker
from aifunction_operator.handler.loader import load_user_code
from aifunction_operator.handler.model_client import TritonModel
from aifunction_operator.handler.routes import match, parse_routes

ROUTES = parse_routes(("POST /v1/embeddings", "GET /v1/models", "GET /v1/models/{model}"), "m:f")

# (method, path, expected (template, parameters) or None)
MATCHES = [
    ("POST", "/v1/embeddings", ("/v1/embeddings", {})),
    ("GET", "/v1/models", ("/v1/models", {})),
    ("GET", "/v1/models/minilm", ("/v1/models/{model}", {"model": "minilm"})),
    ("GET", "/v1/embeddings", None),
    ("POST", "/v1/models", None),
    ("GET", "/v1/models/a/b", None),
    ("GET", "/v1/models/", None),
    ("POST", "/v1/embeddings/", None),
]


@pytest.mark.parametrize(("method", "path", "expected"), MATCHES)
def test_match(method: str, path: str, expected: tuple[str, dict[str, str]] | None) -> None:
    found = match(ROUTES, method, path)
    assert (None if found is None else (found[0].template, found[1])) == expected


# (declared, words in the load error)
BAD = [
    ("POST /x", "list of 'METHOD /path' strings, not str"),
    (["FETCH /x"], "is not a route key"),
    (["POST x"], "is not a route key"),
    ([3], "is not a route key"),
    (["POST /"], "the runtime's own"),
    (["POST /invoke"], "the runtime's own"),
    (["GET /v2/health/ready"], "the runtime's own"),
    (["GET /aifn/status"], "the runtime's own"),
    (["GET /metrics"], "the runtime's own"),
    (["GET /a//b"], "path segment ''"),
    (["GET /a/{b c}"], "path segment '{b c}'"),
    (["GET /{a}/{a}"], "names a path parameter twice"),
    (["GET /x", "GET /x"], "GET /x more than once"),
]


@pytest.mark.parametrize(("declared", "words"), BAD)
def test_bad_routes_stop_the_load(declared: object, words: str) -> None:
    with pytest.raises(HandlerLoadError, match="m:f.routes") as caught:
        parse_routes(declared, "m:f")
    assert words in str(caught.value)


def test_a_declared_route_reaches_the_function_with_api_gateway_fields(tmp_path: Path) -> None:
    """The real loader and invoker (no model call): resource, pathParameters, and a body that is the function's to parse."""
    (tmp_path / "routed.py").write_text(textwrap.dedent("""
        def handler(event, context):
            return {k: event[k] for k in ("httpMethod", "path", "resource", "pathParameters", "body")}
        handler.routes = ["GET /items/{item}", "POST /items"]
    """))
    invoker = FunctionInvoker(load_user_code("routed:handler", tmp_path), TritonModel("127.0.0.1:1", "m"), function_name="fn")
    cases = [
        (HttpRequest("GET", "/items/42", {}), {"httpMethod": "GET", "path": "/items/42", "resource": "/items/{item}",
                                               "pathParameters": {"item": "42"}, "body": None}),
        (HttpRequest("POST", "/items", {"content-type": "application/json"}, body=b"{not json"),
         {"httpMethod": "POST", "path": "/items", "resource": "/items", "pathParameters": None, "body": "{not json"}),
        (HttpRequest("POST", "/", {}, body=b"x"), {"httpMethod": "POST", "path": "/", "resource": "/",
                                                   "pathParameters": None, "body": "x"}),
    ]
    try:
        for request, event in cases:
            assert invoker.serves(request.method, request.path)
            response = asyncio.run(invoker.invoke(request))
            assert (response.status, json.loads(response.body)) == (200, event)
        assert not invoker.serves("GET", "/items") and not invoker.serves("GET", "/")
    finally:
        asyncio.run(invoker.close())
