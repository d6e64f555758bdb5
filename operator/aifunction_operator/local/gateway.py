"""The Python side of `aifn run`'s HTTP data path, behind Envoy: health, status, metrics, and the activator.

Envoy (data_plane.py) is the only door and sends here what Python decides: health (the function
is live and ready even at zero replicas: the next request starts one), /metrics, /aifn/status,
and the model's calls while no replica takes requests (Envoy's proxy mode). Those cold calls
are checked (model name, body size, JSON), wait in the pool's bounded queue while a replica
starts, and are forwarded to it; Triton's own answer passes through, including its 400s for a
wrong shape or datatype. Every error produced here is JSON `{"error": "..."}`, as Triton's are.

Bounds: Envoy caps connections, header and body sizes and times; here a body is read once, up
to `max_body_bytes` after decompression (413); a gzip/deflate body is forwarded decompressed,
without its Content-Encoding.

Only the model's own calls are forwarded (metadata, ready, config, stats, infer, generate,
optionally under /versions/<n>); Triton's admin APIs (repository, shared memory, trace,
logging) get 403 here, and Triton itself refuses them too (triton_command.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from .envoy_process import EnvoyStartError
from .metrics import GatewayMetrics
from .pool import ReplicaPool, Unavailable

log = logging.getLogger("aifn.run")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No Content-Encoding: aiohttp decompresses a gzip/deflate/br body as it reads it, so the bytes
# forwarded are plain (forwarding the header made Triton decompress them again and fail).
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept-Encoding", "Inference-Header-Content-Length")
DECODED_ENCODINGS = frozenset(("", "identity", "gzip", "deflate", "br"))  # what aiohttp decodes
# `data` lists nested deeper than this are refused (a tensor has at most a few dozen dimensions).
MAX_JSON_DEPTH = 64
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Content-Encoding", "Inference-Header-Content-Length")
BINARY_HEADER = "Inference-Header-Content-Length"
# What may follow /v2/models/<name>: the model's own calls, never its trace settings.
MODEL_TAIL = re.compile(r"(/versions/[0-9]+)?(/(ready|config|stats|infer|generate|generate_stream))?")
ADMIN_PREFIXES = r"repository|systemsharedmemory|cudasharedmemory|trace|logging"
MODEL_METHODS = ("GET", "POST")


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error response in Triton's shape."""
    return web.json_response({"error": message}, status=status, headers=headers)


class Gateway:
    """aiohttp application serving one function's model through a ReplicaPool."""

    def __init__(
        self,
        model_name: str,
        pool: ReplicaPool,
        metrics: GatewayMetrics,
        *,
        max_body_bytes: int = 16 * 1024 * 1024,
        request_timeout: float = 300.0,
        read_timeout: float = 60.0,
        extra_status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.model_name = model_name
        self.pool = pool
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.read_timeout = read_timeout
        self.extra_status = extra_status or dict
        self.closing = False

    def application(self) -> web.Application:
        """The aiohttp application with every route and the JSON error middleware."""
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[self._errors_middleware])
        app.router.add_get("/v2/health/live", self.live, name="health-live")
        app.router.add_get("/v2/health/ready", self.ready, name="health-ready")
        app.router.add_get("/v2", self.server_metadata, name="server")
        app.router.add_route("*", r"/v2/models/{model}{tail:(/.*)?}", self.proxy, name="model")
        app.router.add_route("*", rf"/v2/{{api:({ADMIN_PREFIXES})}}{{tail:(/.*)?}}", self.admin, name="admin")
        app.router.add_get("/metrics", self.prometheus, name="metrics")
        app.router.add_get("/aifn/status", self.status, name="status")
        app.router.add_get(r"/aifn/replicas/{replica:\d+}/metrics", self.replica_metrics, name="replica-metrics")
        return app

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def ready(self, request: web.Request) -> web.Response:
        """Ready while not shutting down: at zero replicas the next request starts one."""
        return web.Response(status=503 if self.closing else 200)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"name": "aifn", "version": "v2", "extensions": ["binary_tensor_data"], "models": [self.model_name]})

    async def prometheus(self, request: web.Request) -> web.Response:
        """Python's metrics plus the calls Envoy answered from the replicas and its requests in flight."""
        try:
            data_plane = self.pool.data_plane
            counts = await data_plane.request_counts() if data_plane else {}
            latency = await data_plane.latency() if data_plane else None
        except (OSError, ValueError, asyncio.TimeoutError, EnvoyStartError) as exc:
            return json_error(503, f"envoy's stats did not answer: {exc}", {"Retry-After": "1"})
        body = self.metrics.render(counts, envoy_in_flight=self.pool.envoy.demand, envoy_latency=latency)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def status(self, request: web.Request) -> web.Response:
        hosts = await self.pool.hosts()
        return web.json_response({"model": self.model_name, **self.extra_status(), **self.pool.describe(hosts)})

    async def replica_metrics(self, request: web.Request) -> web.Response:
        """Triton's own metrics for one replica."""
        wanted = int(request.match_info["replica"])
        replica = next((r for r in self.pool.replicas if r.id == wanted), None)
        if replica is None:
            known = ", ".join(str(r.id) for r in self.pool.replicas) or "none running"
            return json_error(404, f"no replica {wanted} (replicas: {known})")
        try:
            text = await replica.fetch_metrics()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return json_error(502, f"replica {wanted} did not answer its metrics endpoint: {exc!r}")
        return web.Response(text=text, content_type="text/plain")

    async def admin(self, request: web.Request) -> web.Response:
        """Triton's repository, shared-memory, trace and logging APIs: never forwarded."""
        return json_error(403, f"{request.method} {request.path}: Triton's {request.match_info['api']} API is not exposed by aifn functions")

    async def proxy(self, request: web.Request) -> web.Response:
        """Everything under /v2/models/<name>: checked here, then proxied to a ready replica."""
        model = request.match_info["model"]
        if model != self.model_name:
            return json_error(404, f"unknown model '{model}': this function serves model '{self.model_name}'")
        if not MODEL_TAIL.fullmatch(request.match_info["tail"]):
            return json_error(403, f"{request.method} {request.path}: not exposed by aifn functions "
                              f"(a model serves metadata, ready, config, stats, infer and generate)")
        if request.method not in MODEL_METHODS:  # Triton answers these with a text/plain 405
            return json_error(405, f"{request.method} {request.path}: a model's calls are GET or POST", {"Allow": "GET, POST"})
        if self.closing:
            return json_error(503, "the function is shutting down", {"Retry-After": "1"})
        body = await request.read()  # already read, bounded, by the middleware
        if request.method == "POST" and request.match_info["tail"].endswith("/infer"):
            problem = infer_body_problem(body, request.headers.get(BINARY_HEADER))
            if problem:
                return json_error(400, problem)
        return await self._forward(request, body)

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        started = time.monotonic()
        self.metrics.in_flight.inc()
        try:
            try:
                replica = await self.pool.acquire()
            except Unavailable as exc:
                return json_error(503, str(exc), {"Retry-After": str(exc.retry_after)})
            try:
                headers = {h: request.headers[h] for h in FORWARDED_REQUEST_HEADERS if h in request.headers}
                headers.setdefault("Accept-Encoding", "identity")  # else aiohttp asks Triton for gzip the caller never accepted
                sent = time.monotonic()
                status, resp_headers, payload = await replica.forward(
                    request.method, request.path, request.query_string, headers, body, self.request_timeout
                )
                self.metrics.proxy_latency.observe(time.monotonic() - sent)
            except asyncio.TimeoutError:
                return json_error(504, f"Triton replica {replica.id} did not answer within {self.request_timeout:.0f}s")
            except aiohttp.ClientError as exc:
                self.pool.report_broken(replica)
                return json_error(
                    502, f"Triton replica {replica.id} failed while serving the request ({type(exc).__name__}: {exc}); "
                    "it is replaced on the next request",
                )
            finally:
                self.pool.release(replica)
            if status < 500:
                self.pool.record_response(replica)
            out_headers = {h: resp_headers[h] for h in FORWARDED_RESPONSE_HEADERS if h in resp_headers}
            return web.Response(status=status, body=payload, headers=out_headers)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.latency.observe(time.monotonic() - started)

    async def _read_body(self, request: web.Request) -> web.Response | None:
        """Read the whole body (aiohttp keeps it for the handler), bounded in size and time; an error response or None."""
        if not request.body_exists:
            return None
        too_big = json_error(
            413, f"request body is larger than the gateway's limit of {self.max_body_bytes} bytes (--max-body-bytes)"
        )
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return too_big
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in DECODED_ENCODINGS:
            return json_error(415, f"request header Content-Encoding: {encoding!r} is not supported (gzip, deflate, br or none)")
        try:
            await asyncio.wait_for(request.read(), self.read_timeout)
        except web.HTTPRequestEntityTooLarge:
            return too_big
        except asyncio.TimeoutError:
            response = json_error(
                408, f"request body: not received within {self.read_timeout:g}s (--read-timeout); the connection is closed"
            )
            response.force_close()
            return response
        except (HttpProcessingError, RequestPayloadError) as exc:  # e.g. a body that is not what its Content-Encoding says
            detail = " ".join(str(exc).split())
            response = json_error(400, f"request body (Content-Encoding {encoding or 'identity'}) cannot be read: {detail}")
            response.force_close()
            return response
        return None

    @web.middleware
    async def _errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            refused = await self._read_body(request)
            response = refused if refused is not None else await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = f"{request.method} {request.path}: {exc.reason}"
            if exc.status == 404:
                message += f" (this gateway serves /v2/health/*, /v2/models/{self.model_name}/..., /metrics, /aifn/status)"
            response = json_error(exc.status, message)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the gateway must answer, and keep serving
            log.exception("unexpected error serving %s %s", request.method, request.path)
            response = json_error(500, f"internal gateway error serving {request.method} {request.path}; see the aifn log")
        if request.headers.get("x-envoy-attempt-count", "1") == "1":  # Envoy counts its retries' answers itself
            self.metrics.requests.labels(self.metrics.function, endpoint_of(request), str(response.status)).inc()
        return response


def endpoint_of(request: web.Request) -> str:
    """The metrics label for a request: infer, model, health-live, ..., or unknown."""
    name = request.match_info.route.name
    if name == "model" and request.match_info.get("tail", "").endswith("/infer"):
        return "infer"
    return name or "unknown"


def infer_body_problem(body: bytes, binary_header_length: str | None) -> str | None:
    """What is wrong with an inference request body that Triton would reject as unparsable, or None."""
    json_part = body
    if binary_header_length is not None:
        if not (binary_header_length.isascii() and binary_header_length.isdigit()):  # int() takes " 5", "1_0", "٣"
            return f"header {BINARY_HEADER} must be an integer, got {binary_header_length!r}"
        length = int(binary_header_length)
        if not 0 <= length <= len(body):
            return f"header {BINARY_HEADER} is {length} but the body has {len(body)} bytes"
        json_part = body[:length]
    if not json_part:
        return "request body is empty: an inference request is a JSON object with an 'inputs' list"
    try:
        document = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"request body is not valid JSON: {exc}"
    except RecursionError:
        return "request body nests JSON arrays or objects too deeply to parse (about a thousand levels; a tensor needs a few)"
    if not isinstance(document, dict):
        return f"request body must be a JSON object, got {type(document).__name__}"
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        return "request body must have a non-empty 'inputs' list"
    for index, item in enumerate(inputs):
        if not isinstance(item, dict):
            return f"inputs[{index}] must be an object with name, shape, datatype and data"
        missing = [key for key in ("name", "shape", "datatype") if key not in item]
        if missing:
            return f"inputs[{index}] is missing {', '.join(missing)}"
        parameters = item.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None and not (_is_int(size) and size >= 0):
            return f"inputs[{index}] ({item['name']!r}): parameters.binary_data_size must be a non-negative integer, got {size!r}"
        problem = _data_problem(item)
        if problem:
            return f"inputs[{index}] ({item['name']!r}): {problem}"
    return None


def _data_problem(item: dict[str, Any]) -> str | None:
    """A shape that is not a list of sizes, or JSON `data` whose element count does not match it."""
    shape = item["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return f"shape must be a list of non-negative integers, got {shape!r}"
    if "data" not in item:
        return None  # binary tensor data, checked by Triton
    expected = math.prod(shape)
    found = _count_elements(item["data"])
    if found < 0:
        return f"'data' nests lists more than {MAX_JSON_DEPTH} levels deep"
    if found != expected:
        return f"shape {shape} needs {expected} values but 'data' has {found}"
    return _datatype_problem(item.get("datatype"), item["data"])


# What JSON values each datatype takes; Triton answers any other value with a 500 (found by
# tests/serving/local/test_run_fuzz.py), which is the caller's mistake: the gateway answers 400.
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_JSON_ELEMENTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{f"INT{bits}": (_is_int, "integers") for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": (lambda v: _is_int(v) and v >= 0, "non-negative integers") for bits in (8, 16, 32, 64)},
    **{kind: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "numbers") for kind in ("FP16", "FP32", "FP64", "BF16")},
    "BYTES": (lambda v: isinstance(v, str), "strings"),
}


def _datatype_problem(datatype: Any, data: Any) -> str | None:
    check = _JSON_ELEMENTS.get(datatype) if isinstance(datatype, str) else None
    if check is None:
        return None  # Triton names an unknown datatype itself
    accepts, what = check
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif not accepts(value):
            return f"datatype {datatype} takes {what} in 'data', got {json.dumps(value)[:40]}"
    return None


def _count_elements(data: Any, depth: int = 0) -> int:
    """The number of values in nested lists; -1 when they nest deeper than MAX_JSON_DEPTH."""
    if not isinstance(data, list):
        return 1
    if depth >= MAX_JSON_DEPTH:
        return -1
    if not any(isinstance(d, list) for d in data):
        return len(data)
    total = 0
    for item in data:
        count = _count_elements(item, depth + 1)
        if count < 0:
            return -1
        total += count
    return total
