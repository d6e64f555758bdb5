"""The function runtime: one request in, the user's code around the model call, one response out.

`FunctionInvoker.invoke` is the single code path behind `POST /`, `POST /invoke` and the routes a
Lambda-style function declares (`routes.py`), used by
the kserve server in the cluster and by `aifn run`. Errors map to statuses here and only
here: a malformed request or event -> 400 naming the part; user code raising `BadRequest`
-> 400; the model unreachable -> 503; a call running past `request_timeout` (the function's
`spec.timeoutSeconds`) -> 504; any other exception in user code -> 500 with the message (the
traceback goes to the log, never to the caller).

A synchronous call that times out keeps its worker thread until it returns (Python cannot
stop a thread); `not_ready_reason()` reports when every worker is held that way, so the
readiness probe takes the replica out of rotation instead of answering 200 while requests
can only queue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import Counter, Histogram

from .cloudevents import is_cloudevent, parse_cloudevent
from .context import LambdaContext
from .errors import BadRequest, ModelUnavailable
from .http import HttpRequest, HttpResponse, error_response, json_response, loads
from .inline import run_inline
from .lambda_events import build_event, request_id, to_response
from .loader import LambdaHandler, TransformerHandler, UserCode
from .model_client import TritonModel
from .routes import Route, match

log = logging.getLogger("aifn.handler")

# How synchronous user code runs: on worker threads (safe for any code), or inline on the event
# loop in a greenlet (faster; only for code whose sole waiting is context.infer). See inline.py.
EXECUTIONS = ("threads", "inline")
INVOKE_PATHS = frozenset(("/", "/invoke"))

REQUESTS = Counter("aifn_handler_requests", "Function invocations by response status", ["function", "status"])
LATENCY = Histogram(
    "aifn_handler_request_duration_seconds",
    "Function invocation time, user code and model call included",
    ["function"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class FunctionInvoker:
    """The loaded user code, the model client and the threads synchronous user code runs on."""

    def __init__(
        self,
        user_code: UserCode,
        model: TritonModel,
        *,
        function_name: str,
        threads: int = 64,
        request_timeout: float = 300.0,
        bad_request_types: tuple[type[BaseException], ...] = (),
        execution: str = "threads",
    ) -> None:
        if execution not in EXECUTIONS:
            raise ValueError(f"execution {execution!r} is not one of {', '.join(EXECUTIONS)}")
        self.execution = execution
        self.user_code = user_code
        self.model = model
        self.function_name = function_name
        self.request_timeout = request_timeout
        self.bad_request_types = (BadRequest, *bad_request_types)
        self._counters: dict[int, Any] = {}
        self._latency = LATENCY.labels(function_name)
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aifn-handler")
        self._busy = 0  # worker threads running user code now
        self._busy_lock = threading.Lock()

    @property
    def style(self) -> str:
        """`lambda` or `kserve`."""
        return "lambda" if isinstance(self.user_code, LambdaHandler) else "kserve"

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes the function claims beyond `POST /` and `POST /invoke` (Lambda-style only)."""
        return self.user_code.routes if isinstance(self.user_code, LambdaHandler) else ()

    def serves(self, method: str, path: str) -> bool:
        """Whether `method path` goes to the function: `POST /`, `POST /invoke`, or a declared route."""
        return (method == "POST" and path in INVOKE_PATHS) or match(self.routes, method, path) is not None

    @property
    def busy_workers(self) -> int:
        """Worker threads running synchronous user code right now (timed-out calls included)."""
        return self._busy

    async def ready(self) -> bool:
        """Ready when the user code is loaded (it is, once constructed), a worker is free and Triton's model is ready."""
        return await self.not_ready_reason() is None

    async def not_ready_reason(self) -> str | None:
        """Why the function cannot take a request now, or None when it can."""
        if self.execution == "threads" and self._busy >= self.threads:
            return (
                f"all {self.threads} worker threads are busy running the function (calls past the "
                f"{self.request_timeout:g}s timeout keep their thread until they return); AIFN_HANDLER_THREADS sets how many"
            )
        if not await self.model.ready():
            return f"model {self.model.model_name!r} is not ready on Triton at {self.model.url}"
        return None

    async def invoke(self, request: HttpRequest) -> HttpResponse:
        """Run the function for one request; never raises."""
        started = time.perf_counter()
        req_id = request_id(request)
        deadline = None
        try:
            async with asyncio.timeout(self.request_timeout) as deadline:
                if isinstance(self.user_code, LambdaHandler):
                    response = await self._invoke_lambda(self.user_code, request, req_id, started)
                else:
                    response = await self._invoke_transformer(self.user_code, request)
        except TimeoutError as exc:
            if deadline is None or not deadline.expired():  # raised by the function itself
                log.exception("request %s: the function %s raised", req_id, self.function_name)
                response = json_response(500, {"error": f"{type(exc).__name__}: {exc}", "requestId": req_id})
            else:
                log.warning("request %s: the function %s did not return within %gs", req_id, self.function_name, self.request_timeout)
                response = json_response(504, {
                    "error": f"the function did not return within {self.request_timeout:g}s (spec.timeoutSeconds)",
                    "requestId": req_id,
                })
        except self.bad_request_types as exc:
            response = error_response(400, str(exc) or type(exc).__name__)
        except ModelUnavailable as exc:
            log.warning("request %s: %s", req_id, exc)
            response = error_response(503, str(exc))
        except Exception as exc:
            log.exception("request %s: the function %s raised", req_id, self.function_name)
            response = json_response(500, {"error": f"{type(exc).__name__}: {exc}", "requestId": req_id})
        counter = self._counters.get(response.status)
        if counter is None:
            counter = self._counters[response.status] = REQUESTS.labels(self.function_name, str(response.status))
        counter.inc()
        self._latency.observe(time.perf_counter() - started)
        return response

    async def _invoke_lambda(
        self, handler: LambdaHandler, request: HttpRequest, req_id: str, started: float
    ) -> HttpResponse:
        route = match(handler.routes, request.method, request.path)
        resource, parameters = (route[0].template, route[1]) if route else (None, None)
        event = build_event(request, req_id, resource, parameters)
        context = LambdaContext(
            model=self.model,
            loop=asyncio.get_running_loop(),
            function_name=self.function_name,
            request_id=req_id,
            deadline=time.monotonic() + self.request_timeout - (time.perf_counter() - started),
        )
        result = await self._call(handler.function, handler.is_async, event, context)
        return to_response(result)

    async def _invoke_transformer(self, handler: TransformerHandler, request: HttpRequest) -> HttpResponse:
        body, headers = _transformer_input(request)
        inputs: Any = body
        if handler.preprocess is not None:
            inputs = await self._call(handler.preprocess, _is_async(handler.preprocess), body, headers)
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"preprocess returned {type(inputs).__name__}; it must return a mapping of model input name to array"
            )
        outputs: Any = await self.model.infer(inputs)
        if handler.postprocess is not None:
            outputs = await self._call(handler.postprocess, _is_async(handler.postprocess), outputs, headers)
        return to_response(outputs)

    async def _call(self, function: Callable[..., Any], is_async: bool, *args: Any) -> Any:
        if is_async:
            return await function(*args)
        if self.execution == "inline":
            return await run_inline(function, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._counted, function, *args))

    def _counted(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function` on a worker thread, counted in `busy_workers` while it runs."""
        with self._busy_lock:
            self._busy += 1
        try:
            return function(*args)
        finally:
            with self._busy_lock:
                self._busy -= 1

    async def close(self) -> None:
        """Close the model client and stop the worker threads."""
        await self.model.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _is_async(function: Callable[..., Any]) -> bool:
    return asyncio.iscoroutinefunction(function)


def _transformer_input(request: HttpRequest) -> tuple[Any, dict[str, str]]:
    """The JSON body (or CloudEvent data) and headers a KServe-style preprocess receives."""
    headers = dict(request.headers)
    if is_cloudevent(request):
        event = parse_cloudevent(request)
        headers.update({f"ce-{name}": value for name, value in event.attributes.items()})
        if event.body is None or event.is_base64:
            raise BadRequest("CloudEvent data must be JSON for a KServe-style handler")
        try:
            return loads(event.body), headers
        except ValueError as exc:
            raise BadRequest(f"CloudEvent data is not valid JSON ({exc})") from None
    if not request.body:
        raise BadRequest("request body is empty; a KServe-style handler takes a JSON body")
    if request.content_type not in ("", "application/json"):
        raise BadRequest(f"request Content-Type {request.content_type!r}: a KServe-style handler takes application/json")
    try:
        return loads(request.body), headers
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON ({exc})") from None
