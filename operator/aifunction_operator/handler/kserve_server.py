"""The handler invoker as the function's serving container, built on kserve's ModelServer.

kserve supplies the server (uvicorn + FastAPI), `/v2/health/live`, the v1/v2 model
endpoints, Prometheus `/metrics` and its exception handlers. This module registers the
function as a kserve `Model` (named after the function; `/v1/models/<fn>:predict` works
too) and adds, ahead of kserve's own routes:

- `POST /` and `POST /invoke`: the function (Lambda event or KServe-style JSON, CloudEvents
  in binary or structured mode);
- `GET /v2/health/ready`: 200 only when the user's code is loaded and Triton's model is ready.

Importing kserve parses `sys.argv` (kserve's own flags), so only this module imports it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from kserve import Model, ModelServer
from kserve import model_server as kserve_model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.rest.server import RESTServer

from .asgi import FunctionRoutes
from .http import HttpRequest, error_response, loads
from .loader import load_user_code
from .model_client import TritonModel
from .invoker import FunctionInvoker
from .settings import DEFAULT_MAX_BODY_BYTES, HandlerSettings

log = logging.getLogger("aifn.handler")


class FunctionModel(Model):
    """The function as a kserve Model: health from the invoker, v1 predict through the invoker."""

    def __init__(self, invoker: FunctionInvoker) -> None:
        super().__init__(invoker.function_name)
        self.invoker = invoker
        self.ready = True  # the user's code is loaded before the model is built

    async def healthy(self) -> bool:
        return await self.invoker.ready()

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """`/v1/models/<fn>:predict`: the JSON body goes to the function as a POST."""
        body = payload if isinstance(payload, (bytes, bytearray)) else _json_bytes(payload)
        request = HttpRequest(
            "POST", f"/v1/models/{self.name}:predict", {"content-type": "application/json", **(headers or {})}, {}, body
        )
        response = await self.invoker.invoke(request)
        parsed = loads(response.body) if response.body else None
        if response.status == 400:
            raise InvalidInput(_message(parsed))
        if response.status >= 300:
            raise InferenceError(_message(parsed))
        return parsed


class LeanRESTServer(RESTServer):
    """kserve's REST server without its timing middleware, unless access logs are asked for.

    That middleware looks up the FastAPI route of every request to name a metric and logs two
    timing lines per request; profiled under load it took about a fifth of the process's CPU.
    kserve's Prometheus histograms (via the Model) and /metrics are unaffected.
    """

    def _add_middlewares(self, app: FastAPI) -> None:
        if _access_log_wanted():
            super()._add_middlewares(app)


class FunctionModelServer(ModelServer):
    """kserve's ModelServer serving one function over REST with `LeanRESTServer` (one process, no gRPC)."""

    def start(self, models: list[Model]) -> None:  # type: ignore[override]
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = LeanRESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def build_invoker(settings: HandlerSettings) -> FunctionInvoker:
    """Load the user's code (once) and make the invoker with its Triton model client."""
    user_code = load_user_code(settings.entrypoint, settings.handler_path)
    model = TritonModel(
        settings.triton_url, settings.model_name, settings.model_version,
        timeout=settings.request_timeout, client=settings.triton_client,
    )
    return FunctionInvoker(
        user_code,
        model,
        function_name=settings.function_name,
        threads=settings.threads,
        request_timeout=settings.request_timeout,
        bad_request_types=(InvalidInput,),
        execution=settings.execution,
    )


def add_function_routes(app: FastAPI, invoker: FunctionInvoker, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    """Serve `POST /` and `POST /invoke` (an ASGI layer ahead of FastAPI, which also bounds every
    request body) and the strict `GET /v2/health/ready` on kserve's app."""

    async def ready() -> Response:
        reason = await invoker.not_ready_reason()
        if reason is None:
            return Response(content=b'{"ready":true}', media_type="application/json")
        response = error_response(503, reason)
        return Response(content=response.body, status_code=503, media_type="application/json")

    app.add_middleware(FunctionRoutes, invoker=invoker, max_body_bytes=max_body_bytes)
    app.add_api_route("/v2/health/ready", ready, methods=["GET"], include_in_schema=False)


def serve(settings: HandlerSettings) -> None:
    """Load the code, then serve until SIGTERM (blocks)."""
    invoker = build_invoker(settings)
    log.info(
        "function %s: %s handler %s in front of model %s at %s",
        settings.function_name, invoker.style, settings.entrypoint, settings.model_name, settings.triton_url,
    )
    _use_uvloop()
    add_function_routes(kserve_model_server.app, invoker, settings.max_body_bytes)
    server = FunctionModelServer(
        http_port=settings.port,
        enable_grpc=False,
        enable_latency_logging=False,
        workers=1,
    )
    _quiet_per_request_logs()  # after ModelServer(), whose logging setup resets the levels
    server.start([FunctionModel(invoker)])


def _quiet_per_request_logs() -> None:
    """kserve logs timing lines and uvicorn an access line per request: at 1000s of req/s that is
    a large share of the CPU (AIFN_ACCESS_LOG=true keeps them)."""
    if _access_log_wanted():
        return
    for name in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _access_log_wanted() -> bool:
    return os.environ.get("AIFN_ACCESS_LOG", "").lower() in ("1", "true", "yes")


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # kserve's ModelServer.start asks for the current loop before asyncio.run makes its own.
    asyncio.set_event_loop(asyncio.new_event_loop())


def _json_bytes(payload: Any) -> bytes:
    from .http import dumps

    return dumps(payload)


def _message(parsed: Any) -> str:
    if isinstance(parsed, dict) and "error" in parsed:
        return str(parsed["error"])
    return str(parsed)
