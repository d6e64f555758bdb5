"""Wire one function into a running local service: Triton install, Envoy, pool, activator, signals.

`serve()` starts Envoy on the function's ports (data_plane.py) in front of the Python side on
loopback (gateway.py, and grpc_proxy.py for grpc functions), runs the scaling loop and returns
after SIGINT/SIGTERM (or `stop`), once every replica and Envoy are stopped.

    client --HTTP/gRPC--> Envoy --warm: least request, containerConcurrency--> Triton replicas
                            |                                                    ^
                            +--health, status, metrics, cold calls--> Python ----+ (starts, forwards)
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..spec.model import AIFunction

if TYPE_CHECKING:
    from .handler import LocalHandler
from .autoscaler import ScalingPolicy
from .data_plane import DataPlane, ListenerError
from .envoy_config import FunctionRoute
from .gateway import Gateway
from .metrics import LATENCY_BUCKETS, GatewayMetrics
from .pool import ReplicaPool
from .envoy_process import find_envoy
from .tritonserver import TritonInstall, TritonProcess, find_triton, free_port, free_ports

log = logging.getLogger("aifn.run")

DEFAULT_REQUEST_TIMEOUT = 300.0


def default_max_connections() -> int:
    """Open client connections Envoy allows by default: half the descriptors a process may open
    (raised to the hard limit first; Envoy inherits it), at most 4096; the rest serve the replicas."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 65536), hard))
            soft = min(wanted, 65536)
        except (ValueError, OSError):
            pass
    return max(16, min(4096, (soft if soft != resource.RLIM_INFINITY else 8192) // 2))


class ListenError(Exception):
    """The gateway cannot bind its address; the message names it."""


@dataclass(frozen=True)
class RunOptions:
    """What `aifn run` takes from its command line."""

    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int | None = None
    idle_timeout: float = 60.0
    queue_limit: int = 256
    max_body_bytes: int = 16 * 1024 * 1024
    read_timeout: float = 60.0  # a request head or body must arrive within this (also the keep-alive idle limit)
    max_connections: int | None = None  # open client connections; None: see default_max_connections()
    max_replicas: int | None = None  # when the function sets none
    log_dir: Path | None = None


@dataclass(frozen=True)
class Endpoints:
    """Where the running function answers."""

    http: str
    grpc: str | None
    log_dir: Path


def build_pool(
    fn: AIFunction, repository: Path, options: RunOptions, install: TritonInstall, metrics: GatewayMetrics, log_dir: Path,
    data_plane: DataPlane | None = None,
) -> ReplicaPool:
    """The replica pool for `fn`: its scaling policy, how a replica's Triton is started, the Envoy it publishes to."""
    scaling = fn.spec.scaling
    policy = ScalingPolicy.from_scaling(
        scaling, idle_timeout=options.idle_timeout, default_max_replicas=options.max_replicas or (os.cpu_count() or 1)
    )
    env = {var.name: var.value for var in fn.spec.runtime.env if var.value is not None}
    skipped = [var.name for var in fn.spec.runtime.env if var.value is None]
    if skipped:
        log.warning("spec.runtime.env: %s come from Kubernetes objects and are not set locally", ", ".join(skipped))

    def new_process(replica_id: int) -> TritonProcess:
        return TritonProcess(
            install,
            repository,
            fn.spec.model.name,
            ports=free_ports(),
            log_path=log_dir / f"replica-{replica_id}.log",
            extra_args=fn.spec.runtime.args,
            env={**os.environ, **env},
            die_with_parent=True,
        )

    return ReplicaPool(
        new_process,
        policy,
        metrics,
        data_plane=data_plane,
        queue_limit=options.queue_limit,
        startup_timeout=float(scaling.startup_timeout),
        schedules=scaling.schedules,
    )


def function_route(fn: AIFunction, options: RunOptions, activator_port: int, activator_grpc_port: int | None,
                   handler_paths: tuple[str, ...], handler_patterns: tuple[str, ...] = ()) -> FunctionRoute:
    """What Envoy serves for `fn`: its ports, limits and the Python side's loopback ports."""
    scaling = fn.spec.scaling
    return FunctionRoute(
        model=fn.spec.model.name,
        port=options.port,
        activator_port=activator_port,
        timeout_seconds=float(fn.spec.timeout_seconds or DEFAULT_REQUEST_TIMEOUT),
        container_concurrency=scaling.container_concurrency or 0,
        queue_limit=options.queue_limit,
        max_body_bytes=options.max_body_bytes,
        startup_timeout=float(scaling.startup_timeout),
        read_timeout=options.read_timeout,
        activator_grpc_port=activator_grpc_port,
        address=options.host,
        grpc_port=(options.grpc_port or 0) if activator_grpc_port is not None else None,
        python_paths=handler_paths,
        python_patterns=handler_patterns,
    )


async def serve(
    fn: AIFunction,
    repository: Path,
    options: RunOptions,
    *,
    on_ready: Callable[[Endpoints], None] | None = None,
    stop: asyncio.Event | None = None,
    handler: LocalHandler | None = None,
) -> None:
    """Serve `fn` until SIGINT/SIGTERM or `stop` is set; every replica and Envoy are stopped on the way out.

    With `handler` (spec.handler), `POST /` and `POST /invoke` run the function's code, whose
    model calls come back through Envoy (so they scale the replicas from zero too).
    """
    install = find_triton()
    find_envoy()
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix=f"aifn-{fn.name}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    metrics = GatewayMetrics(fn.name)
    request_timeout = float(fn.spec.timeout_seconds or DEFAULT_REQUEST_TIMEOUT)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    grpc_proxy = None
    data_plane: DataPlane | None = None
    pool: ReplicaPool | None = None
    gateway: Gateway | None = None
    scaler: asyncio.Task[None] | None = None
    try:
        activator_port = free_port()
        activator_grpc_port = free_port() if fn.spec.runtime.protocol == "grpc" else None
        route = function_route(fn, options, activator_port, activator_grpc_port,
                               ("/", "/invoke") if handler is not None else (),
                               handler.route_patterns() if handler is not None else ())
        data_plane = DataPlane(route, log_dir / "envoy", max_connections=options.max_connections or default_max_connections(),
                               latency_buckets=LATENCY_BUCKETS)
        pool = build_pool(fn, repository, options, install, metrics, log_dir, data_plane)
        gateway = Gateway(
            fn.spec.model.name, pool, metrics,
            max_body_bytes=options.max_body_bytes, request_timeout=request_timeout, read_timeout=options.read_timeout,
            extra_status=lambda: {"function": fn.name, "repository": str(repository), "pid": os.getpid()},
        )
        app = gateway.application()
        if handler is not None:
            handler.mount(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", activator_port).start()
        if activator_grpc_port is not None:
            from .grpc_proxy import GrpcProxy  # noqa: PLC0415 - grpc functions only

            grpc_proxy = GrpcProxy(fn.spec.model.name, pool, stream_idle_timeout=request_timeout)
            await grpc_proxy.start("127.0.0.1", activator_grpc_port, read_timeout=options.read_timeout)
        try:
            ports = await data_plane.start()
        except ListenerError as exc:
            where = f"{options.host}:{options.port}" + (f" or {options.host}:{options.grpc_port}" if options.grpc_port else "")
            raise ListenError(f"cannot listen on {where}: {exc}") from exc
        scaler = loop.create_task(pool.run())
        grpc_url = f"{options.host}:{ports[1]}" if len(ports) > 1 else None
        endpoints = Endpoints(http=f"http://{options.host}:{ports[0]}", grpc=grpc_url, log_dir=log_dir)
        if handler is not None:
            await handler.start(f"http://127.0.0.1:{ports[0]}" if options.host in ("0.0.0.0", "::") else endpoints.http)
        if on_ready:
            on_ready(endpoints)
        await stop.wait()
    finally:
        log.info("stopping: draining requests and stopping Triton replicas")
        if gateway is not None:
            gateway.closing = True
        if data_plane is not None:
            await data_plane.stop_listening()
        if handler is not None:
            await handler.close()
        if pool is not None:
            await pool.close()
        if scaler is not None:
            scaler.cancel()
            await asyncio.gather(scaler, return_exceptions=True)
        if data_plane is not None:
            await data_plane.stop()
        if grpc_proxy is not None:
            await grpc_proxy.stop()
        if runner is not None:
            await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
