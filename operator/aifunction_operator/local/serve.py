"""Wire one function into a running local service: Triton install, pool, gateway, signals.

`serve()` binds the gateway (and the gRPC proxy for grpc functions), runs the scaling loop
and returns after SIGINT/SIGTERM (or `stop`), once every replica is stopped.
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
from .gateway import Gateway, json_protocol_errors, limit_connections
from .metrics import GatewayMetrics
from .pool import ReplicaPool
from .tritonserver import TritonInstall, TritonProcess, find_triton, free_ports

log = logging.getLogger("aifn.run")

DEFAULT_REQUEST_TIMEOUT = 300.0


def default_max_connections() -> int:
    """Open gateway connections allowed by default: half the descriptors this process may open
    (raised to the hard limit first), at most 4096; the rest serve replicas, logs and gRPC."""
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
    fn: AIFunction, repository: Path, options: RunOptions, install: TritonInstall, metrics: GatewayMetrics, log_dir: Path
) -> ReplicaPool:
    """The replica pool for `fn`: its scaling policy and how a replica's Triton is started."""
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
        queue_limit=options.queue_limit,
        startup_timeout=float(scaling.startup_timeout),
        schedules=scaling.schedules,
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
    """Serve `fn` until SIGINT/SIGTERM or `stop` is set; every replica is stopped on the way out.

    With `handler` (spec.handler), `POST /` and `POST /invoke` run the function's code, whose
    model calls come back through this gateway (so they scale the replicas from zero too).
    """
    install = find_triton()
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix=f"aifn-{fn.name}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    metrics = GatewayMetrics(fn.name)
    pool = build_pool(fn, repository, options, install, metrics, log_dir)
    gateway = Gateway(
        fn.spec.model.name,
        pool,
        metrics,
        max_body_bytes=options.max_body_bytes,
        request_timeout=float(fn.spec.timeout_seconds or DEFAULT_REQUEST_TIMEOUT),
        read_timeout=options.read_timeout,
        extra_status=lambda: {"function": fn.name, "repository": str(repository), "pid": os.getpid()},
    )
    app = gateway.application()
    if handler is not None:
        handler.mount(app)
    # keepalive_timeout: aiohttp closes a connection that has not delivered a complete request
    # head this long after it opened or after its last response (slow or idle clients).
    # lingering_time: how long aiohttp drains a body left unread (after a 408/413) before closing.
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False,
        keepalive_timeout=options.read_timeout, lingering_time=min(10.0, options.read_timeout),
    )
    await runner.setup()
    assert runner.server is not None
    max_connections = options.max_connections or default_max_connections()
    limit_connections(runner.server, max_connections)
    json_protocol_errors(runner.server)
    site = web.TCPSite(runner, options.host, options.port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    scaler = loop.create_task(pool.run())
    grpc_proxy = None
    try:
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}") from exc
        http_port = runner.addresses[0][1]
        grpc_url = None
        if fn.spec.runtime.protocol == "grpc":
            from .grpc_proxy import GrpcProxy  # noqa: PLC0415 - grpc functions only

            grpc_proxy = GrpcProxy(
                fn.spec.model.name, pool, stream_idle_timeout=float(fn.spec.timeout_seconds or DEFAULT_REQUEST_TIMEOUT)
            )
            try:
                grpc_port = await grpc_proxy.start(
                    options.host, options.grpc_port or 0, read_timeout=options.read_timeout, max_connections=max_connections
                )
            except RuntimeError as exc:  # grpc reports a port it cannot bind this way
                raise ListenError(f"cannot listen for gRPC on {options.host}:{options.grpc_port}: {exc}") from exc
            grpc_url = f"{options.host}:{grpc_port}"
        endpoints = Endpoints(http=f"http://{options.host}:{http_port}", grpc=grpc_url, log_dir=log_dir)
        if handler is not None:
            await handler.start(f"127.0.0.1:{http_port}" if options.host in ("0.0.0.0", "::") else endpoints.http)
        if on_ready:
            on_ready(endpoints)
        await stop.wait()
    finally:
        log.info("stopping: draining requests and stopping Triton replicas")
        gateway.closing = True
        if handler is not None:
            await handler.close()
        if grpc_proxy is not None:
            await grpc_proxy.stop()
        await pool.close()
        scaler.cancel()
        await asyncio.gather(scaler, return_exceptions=True)
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
