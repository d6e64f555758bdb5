"""A lean keep-alive HTTP/1.1 client for Triton's infer endpoint (binary tensor extension).

Why it exists: on a CPU-bound machine tritonclient's asyncio client (aiohttp underneath)
spends about as much CPU per call as Triton spends serving the model (see
docs/handlers.md, "Throughput"). This client does only what the hot path needs: one
pre-built request line and headers, the JSON inference header plus raw tensor bytes
(Triton's binary data extension), and httptools (the C parser uvicorn uses) to read the
answer. Connections are pooled and reused; a request that finds its idle connection closed
by the server is retried once on a fresh one. Metadata and health calls stay on tritonclient.
"""

from __future__ import annotations

import asyncio
import collections
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import httptools
import numpy as np
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor, triton_to_np_dtype

from .errors import ModelInputError, ModelUnavailable
from .http import dumps as json_dumps
from .http import loads as json_loads

HEADER_LENGTH = b"inference-header-content-length"
DECODERS = {b"gzip": lambda data: zlib.decompress(data, 16 + zlib.MAX_WBITS), b"deflate": zlib.decompress}


class _Connection(asyncio.Protocol):
    """One TCP connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, int | None, bytes]] | None = None
        self._body: list[bytes] = []
        self._header_length: int | None = None
        self._keep_alive = True
        self._encoding = b""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response from Triton: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("Triton closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == HEADER_LENGTH:
            self._header_length = int(value)
        elif name == b"connection" and value.lower() == b"close":
            self._keep_alive = False
        elif name == b"content-encoding":
            self._encoding = value.strip().lower()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if not (self._keep_alive and self._parser.should_keep_alive()):
            self.close()
        try:
            body = _decoded(b"".join(self._body), self._encoding)
        except ModelUnavailable as exc:
            self._fail(exc)
            return
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, self._header_length, body))

    async def request(self, payload: bytes) -> tuple[int, int | None, bytes]:
        assert self.transport is not None
        self._body, self._header_length, self._keep_alive, self._encoding = [], None, True, b""
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        try:
            return await self._waiter
        except asyncio.CancelledError:
            self.close()  # a timed-out request leaves the connection mid-response: never reuse it
            raise

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class TritonInferClient:
    """Infer calls to one model over a pool of keep-alive connections (one event loop)."""

    def __init__(self, url: str, model_name: str, model_version: str = "", *, connections: int = 128,
                 timeout: float = 300.0) -> None:
        host, _, port = url.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.model_name = model_name
        self.timeout = timeout
        path = f"/v2/models/{model_name}" + (f"/versions/{model_version}" if model_version else "") + "/infer"
        self._request_head = (
            f"POST {path} HTTP/1.1\r\nHost: {url}\r\nContent-Type: application/octet-stream\r\n"
            "Accept-Encoding: identity\r\n"
        ).encode()
        self._idle: collections.deque[_Connection] = collections.deque()
        self._slots = asyncio.Semaphore(connections)

    async def infer(
        self, inputs: Sequence[tuple[str, str, np.ndarray]], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """`inputs` = (name, Triton datatype, array) triples; returns the named outputs."""
        payload = self._payload(inputs, outputs)
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout):  # no extra task per call, unlike wait_for
                    status, header_length, body = await self._send(payload)
            except TimeoutError:
                raise ModelUnavailable(f"model {self.model_name!r} did not answer within {self.timeout:g}s") from None
        if status != 200:
            message = _error_message(body)
            if status == 400:
                raise ModelInputError(f"model {self.model_name!r} rejected the inputs: {message}")
            raise ModelUnavailable(f"model {self.model_name!r}: HTTP {status}: {message}")
        return _decode(body, header_length, outputs)

    async def _send(self, payload: bytes) -> tuple[int, int | None, bytes]:
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            try:
                result = await conn.request(payload)
            except ConnectionResetError:
                continue  # the server closed an idle connection: try another, then a fresh one
            self._release(conn)
            return result
        try:
            _, conn = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
            result = await conn.request(payload)
        except OSError as exc:
            raise ModelUnavailable(f"model {self.model_name!r} on {self.host}:{self.port} is unreachable: {exc!r}") from None
        self._release(conn)
        return result

    def _release(self, conn: _Connection) -> None:
        if not conn.closed:
            self._idle.append(conn)

    def _payload(self, inputs: Sequence[tuple[str, str, np.ndarray]], outputs: Sequence[str]) -> bytes:
        blobs: list[bytes] = []
        described = []
        for name, datatype, array in inputs:
            if datatype == "BYTES":
                raw = serialize_byte_tensor(array)
                blob = raw.item() if raw.size else b""
            else:
                blob = np.ascontiguousarray(array).tobytes()
            blobs.append(blob)
            described.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                              "parameters": {"binary_data_size": len(blob)}})
        header = json_dumps({
            "inputs": described,
            "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
        })
        length = len(header) + sum(len(b) for b in blobs)
        head = self._request_head + (
            f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {length}\r\n\r\n"
        ).encode()
        return b"".join((head, header, *blobs))

    async def close(self) -> None:
        """Close every pooled connection."""
        while self._idle:
            self._idle.pop().close()


def _decode(body: bytes, header_length: int | None, wanted: Sequence[str]) -> dict[str, np.ndarray]:
    header = json_loads(body[:header_length] if header_length is not None else body)
    offset = header_length or 0
    result: dict[str, np.ndarray] = {}
    for output in header["outputs"]:
        datatype, shape = output["datatype"], output["shape"]
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            array = np.array(output["data"], dtype=triton_to_np_dtype(datatype) if datatype != "BYTES" else np.object_)
        else:
            raw = body[offset: offset + size]
            offset += size
            if datatype == "BYTES":
                array = deserialize_bytes_tensor(raw)
            else:
                array = np.frombuffer(raw, dtype=triton_to_np_dtype(datatype))
        result[output["name"]] = array.reshape(shape)
    return {name: result[name] for name in wanted if name in result}


def _decoded(body: bytes, encoding: bytes) -> bytes:
    """The body without its Content-Encoding (a proxy in between may pass a compressed answer on)."""
    if encoding in (b"", b"identity"):
        return body
    if encoding not in DECODERS:
        raise ModelUnavailable(f"unsupported Content-Encoding {encoding.decode()!r} in Triton's answer")
    try:
        return DECODERS[encoding](body)
    except zlib.error as exc:
        raise ModelUnavailable(f"undecodable {encoding.decode()} body in Triton's answer: {exc}") from None


def _error_message(body: bytes) -> str:
    try:
        parsed: Any = json_loads(body)
    except ValueError:
        return body[:500].decode(errors="replace")
    if isinstance(parsed, Mapping) and "error" in parsed:
        return str(parsed["error"])
    return str(parsed)
