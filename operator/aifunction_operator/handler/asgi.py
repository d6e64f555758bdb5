"""`POST /`, `POST /invoke` and the function's declared routes as a plain ASGI layer in front of
kserve's FastAPI application.

The function's own routes are the hot path; FastAPI's routing, dependency injection and
Request/Response objects cost about as much CPU per request as the rest of the handler
path together (docs/handlers.md, "Throughput"). This layer answers those routes
directly from the ASGI scope and hands every other request (health, metrics, kserve's v1/v2
endpoints) to kserve's application unchanged.

It also bounds every request body (AIFN_MAX_BODY_BYTES): a declared Content-Length over the
limit is answered 413 before anything is read, and a chunked body is counted as it arrives
and refused when it passes the limit, so no route buffers more than the limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from .http import HttpRequest, error_response
from .invoker import FunctionInvoker
from .settings import DEFAULT_MAX_BODY_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODYLESS_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "DELETE"))


class BodyTooLarge(Exception):
    """The request body passed the limit while it was being read."""


class BodyIncomplete(Exception):
    """The client went away, or stopped sending, before the request body was complete."""

    def __init__(self, timed_out: bool) -> None:
        super().__init__("timed out" if timed_out else "disconnected")
        self.timed_out = timed_out


class FunctionRoutes:
    """ASGI middleware: the function's invoke routes, everything else passed on; every body bounded."""

    def __init__(self, app: ASGIApp, invoker: FunctionInvoker, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.invoker = invoker
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(send)
            return
        invoke = self.invoker.serves(scope["method"], scope["path"])
        if not invoke:
            if scope["method"] in BODYLESS_METHODS and declared is None:
                await self.app(scope, receive, send)
                return
            try:  # read (bounded) here, then hand the body to kserve's routes as if it arrived now
                buffered = await _read_body(receive, self.max_body_bytes, self.invoker.request_timeout)
            except BodyTooLarge:
                await self._too_large(send)
                return
            except BodyIncomplete as incomplete:
                if incomplete.timed_out:
                    await self._refuse(send, 408, f"the request body did not arrive within {self.invoker.request_timeout:g}s")
                return
            await self.app(scope, _replay(buffered, receive), send)
            return
        try:
            body = await _read_body(receive, self.max_body_bytes, self.invoker.request_timeout)
        except BodyTooLarge:
            await self._too_large(send)
            return
        except BodyIncomplete as incomplete:  # never run the function on part of a body
            if incomplete.timed_out:
                await self._refuse(send, 408, f"the request body did not arrive within {self.invoker.request_timeout:g}s "
                                              "(AIFN_REQUEST_TIMEOUT_SECONDS)")
            return
        client = scope.get("client")
        request = HttpRequest(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            query=dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
            body=body,
            source_ip=client[0] if client else "",
        )
        response = await self.invoker.invoke(request)
        headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in response.headers.items()]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


    async def _too_large(self, send: Send) -> None:
        await self._refuse(send, 413, f"request body is larger than the function's limit of {self.max_body_bytes} bytes (AIFN_MAX_BODY_BYTES)")

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
        response = error_response(status, message)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(response.body)).encode()),
                   (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses these itself
    return None


async def _read_body(receive: Receive, limit: int, timeout: float | None = None) -> bytes:
    """The whole body, at most `limit` bytes, within `timeout` seconds; BodyIncomplete otherwise."""
    chunks = []
    size = 0
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    while True:
        try:
            remaining = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
            message = await asyncio.wait_for(receive(), remaining)
        except asyncio.TimeoutError:
            raise BodyIncomplete(timed_out=True) from None
        if message["type"] == "http.disconnect":
            raise BodyIncomplete(timed_out=False)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields the already-read body once, then whatever the server sends next (disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
