"""`POST /` and `POST /invoke` as a plain ASGI layer in front of kserve's FastAPI application.

The function's own routes are the hot path; FastAPI's routing, dependency injection and
Request/Response objects cost about as much CPU per request as the rest of the handler
path together (docs/handlers.md, "Throughput"). This layer answers those two routes
directly from the ASGI scope and hands every other request (health, metrics, kserve's v1/v2
endpoints) to kserve's application unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from .http import HttpRequest
from .runtime import FunctionRuntime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INVOKE_PATHS = frozenset(("/", "/invoke"))


class FunctionRoutes:
    """ASGI middleware: the function's invoke routes, everything else passed on."""

    def __init__(self, app: ASGIApp, runtime: FunctionRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in INVOKE_PATHS:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        client = scope.get("client")
        request = HttpRequest(
            method="POST",
            path=scope["path"],
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            query=dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
            body=body,
            source_ip=client[0] if client else "",
        )
        response = await self.runtime.invoke(request)
        headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in response.headers.items()]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)
