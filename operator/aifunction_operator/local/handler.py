"""The handler for `aifn run`: the function's code in the gateway's process, its model calls through the gateway.

`LocalHandler.for_function(fn, function_file)` returns None for a function without
`spec.handler`; otherwise it loads the code once (inline `code`, the directory named by
the annotation `aifn.dev/local-handler-path`, relative to the function's file, or, with
neither nor a cluster source, a module installed with aifn: a built-in handler) and:

- `mount(app)` adds `POST /`, `POST /invoke` and the function's declared routes to the
  gateway's aiohttp application;
- `start(gateway_url)` points the model client at the gateway itself, so a model call
  from the handler goes through the replica pool (a request at zero replicas starts one:
  scale from zero covers the handler) and starts the function's schedules;
- `close()` stops the schedules and closes the client.

The invoker is the same `FunctionInvoker` the cluster's handler container runs, so events,
CloudEvents, error statuses and responses are identical.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from aiohttp import web

from ..constants import GROUP
from ..spec.model import AIFunction
from ..handler.http import HttpRequest, HttpResponse
from ..handler.loader import LambdaHandler, load_user_code
from ..handler.model_client import TritonModel
from ..handler.invoker import FunctionInvoker
from .schedule import Clock, Scheduler

log = logging.getLogger("aifn.run")

ANNOTATION_LOCAL_HANDLER_PATH = f"{GROUP}/local-handler-path"
INVOKE_PATHS = ("/", "/invoke")
START_WAIT_SECONDS = 30.0  # serve.py starts the handler right after Envoy listens


class LocalHandlerError(ValueError):
    """The function's handler cannot run locally; the message names the field."""


class LocalHandler:
    """One function's handler inside `aifn run`."""

    def __init__(self, fn: AIFunction, code_dir: Path | None, *, clock: Clock | None = None, threads: int = 64) -> None:
        handler = fn.spec.handler
        assert handler is not None
        self.fn = fn
        self.code_dir = code_dir
        self.user_code = load_user_code(handler.entrypoint, code_dir)
        self.clock = clock
        self.threads = threads
        self.invoker: FunctionInvoker | None = None
        self._started = asyncio.Event()  # set by start(): Envoy may pass a request on before it
        self.scheduler: Scheduler | None = None
        self._schedule_task: asyncio.Task[None] | None = None
        schedules = list(fn.spec.triggers.schedules)
        self._schedules = schedules
        if fn.spec.triggers.events:
            names = ", ".join(e.name for e in fn.spec.triggers.events)
            log.info("spec.triggers.events (%s): no broker locally; POST CloudEvents to the function instead", names)

    @classmethod
    def for_function(
        cls, fn: AIFunction, function_file: Path | None, *, clock: Clock | None = None
    ) -> LocalHandler | None:
        """The local handler of `fn`, or None when it has no spec.handler; LocalHandlerError when unusable."""
        handler = fn.spec.handler
        if handler is None:
            return None
        annotated = fn.annotations.get(ANNOTATION_LOCAL_HANDLER_PATH)
        if annotated:
            base = function_file.parent if function_file else Path.cwd()
            code_dir = (base / annotated).resolve()
            if not code_dir.is_dir():
                raise LocalHandlerError(f"annotation {ANNOTATION_LOCAL_HANDLER_PATH}: {code_dir} is not a directory")
        elif handler.code is not None:
            code_dir = Path(tempfile.mkdtemp(prefix=f"aifn-{fn.name}-handler-"))
            module_path = code_dir / (handler.module.replace(".", "/") + ".py")
            module_path.parent.mkdir(parents=True, exist_ok=True)
            module_path.write_text(handler.code)
        elif handler.config_map is None and handler.image is None:
            code_dir = None  # a module installed with aifn (aifunction_operator.handler.builtin)
        else:
            source = "spec.handler.configMap" if handler.config_map else "spec.handler.image"
            raise LocalHandlerError(
                f"{source}: the code lives in the cluster; for aifn run set spec.handler.code or the annotation "
                f"{ANNOTATION_LOCAL_HANDLER_PATH} to the directory holding the handler module"
            )
        return cls(fn, code_dir, clock=clock)

    def mount(self, app: web.Application) -> None:
        """Add `POST /`, `POST /invoke` and the function's declared routes to the gateway's application."""
        for path in INVOKE_PATHS:
            app.router.add_post(path, self.handle)
        for route in self.user_code.routes if isinstance(self.user_code, LambdaHandler) else ():
            app.router.add_route(route.method, route.template, self.handle)

    def route_patterns(self) -> tuple[str, ...]:
        """The declared routes' paths as regular expressions (Envoy sends those paths to the gateway)."""
        return tuple(route.pattern.pattern for route in self.user_code.routes) if isinstance(self.user_code, LambdaHandler) else ()

    async def start(self, gateway_url: str) -> None:
        """Create the invoker (model calls go to `gateway_url`) and start the schedules."""
        address = gateway_url.removeprefix("http://").removeprefix("https://").rstrip("/")
        timeout = float(self.fn.spec.timeout_seconds or 300)
        model = TritonModel(address, self.fn.spec.model.name, str(self.fn.spec.model.version or ""), timeout=timeout)
        self.invoker = FunctionInvoker(
            self.user_code, model, function_name=self.fn.name, threads=self.threads, request_timeout=timeout
        )
        if self._schedules:
            self.scheduler = Scheduler(self.fn.name, self._schedules, self.invoke, clock=self.clock)
            self._schedule_task = asyncio.get_running_loop().create_task(self.scheduler.run())
            log.info("schedules of %s: %s", self.fn.name, ", ".join(f"{s.name} ({s.cron})" for s in self._schedules))
        self._started.set()

    async def invoke(self, request: HttpRequest) -> HttpResponse:
        """Run the function for one request (the schedules call this too)."""
        if self.invoker is None:
            raise RuntimeError("LocalHandler.start() was not called")
        return await self.invoker.invoke(request)

    async def handle(self, request: web.Request) -> web.Response:
        """aiohttp route: translate, invoke, translate back (a request that comes before start() waits for it)."""
        try:
            await asyncio.wait_for(self._started.wait(), START_WAIT_SECONDS)
        except TimeoutError:
            return web.json_response({"error": "the function's handler is still starting; retry"}, status=503,
                                     headers={"Retry-After": "1"})
        body = await request.read()
        response = await self.invoke(
            HttpRequest(
                method=request.method,
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                query=dict(request.query),
                body=body,
                source_ip=request.remote or "",
            )
        )
        return web.Response(status=response.status, body=response.body, headers=dict(response.headers))

    async def close(self) -> None:
        """Stop the schedules and close the model client."""
        if self._schedule_task is not None:
            self._schedule_task.cancel()
            await asyncio.gather(self._schedule_task, return_exceptions=True)
        if self.invoker is not None:
            await self.invoker.close()
