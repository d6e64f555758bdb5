"""Prometheus metrics, the health and readiness endpoints, and log formatting."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The operator's metrics, in their own registry (no process-global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter("aifn_reconciles_total", "Reconcile passes by result (the Ready reason, or error).", ["result"], registry=self.registry)
        self.duration = Histogram(
            "aifn_reconcile_duration_seconds",
            "Time of one reconcile pass (render, apply, status).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.writes = Counter("aifn_writes_total", "API writes by kind: service_apply, status, child_apply, child_delete.", ["kind"], registry=self.registry)
        self.functions = Gauge("aifn_functions", "Known functions by Ready status and reason.", ["ready", "reason"], registry=self.registry)

    def observe_reconcile(self, result: str, seconds: float) -> None:
        self.reconciles.labels(result=result).inc()
        self.duration.observe(seconds)

    def count_writes(self, applied: bool, status_written: bool, children_applied: int = 0, children_deleted: int = 0) -> None:
        if applied:
            self.writes.labels(kind="service_apply").inc()
        if status_written:
            self.writes.labels(kind="status").inc()
        if children_applied:
            self.writes.labels(kind="child_apply").inc(children_applied)
        if children_deleted:
            self.writes.labels(kind="child_delete").inc(children_deleted)

    def move_function(self, before: tuple[str, str] | None, after: tuple[str, str] | None) -> None:
        """One function changed readiness (None: it appeared or disappeared)."""
        if before == after:
            return
        if before is not None:
            self.functions.labels(ready=before[0], reason=before[1]).dec()
        if after is not None:
            self.functions.labels(ready=after[0], reason=after[1]).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def health_app(is_ready: Callable[[], bool], is_alive: Callable[[], bool]) -> web.Application:
    """GET /healthz (liveness) and GET /readyz (readiness: watching and Knative settings loaded)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n") if is_alive() else web.Response(status=503, text="not alive\n")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready\n") if is_ready() else web.Response(status=503, text="not ready\n")

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    return app


def metrics_app(metrics: Metrics) -> web.Application:
    """GET /metrics in the Prometheus text format."""

    async def handler(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.add_routes([web.get("/metrics", handler)])
    return app


async def serve(app: web.Application, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start serving `app`; the caller cleans the runner up on shutdown."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and kopf's object reference."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        k8s = getattr(record, "k8s_ref", None)
        if isinstance(k8s, dict):
            entry["object"] = {key: k8s[key] for key in ("namespace", "name") if key in k8s}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str, verbose: bool = False) -> None:
    """Root logging in `text` or `json` at INFO, DEBUG when verbose.

    kopf logs at INFO (DEBUG when verbose) except its per-object lines (`kopf.objects`: handler
    started, succeeded, retried), which stay at WARNING unless verbose; the HTTP and Kubernetes
    client libraries and aiohttp's access log stay at WARNING even when verbose.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kopf").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if verbose else logging.WARNING)
    for noisy in ("urllib3", "kubernetes", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
