"""Envoy as `aifn run`'s data plane: started with the function, told the replica set, read for load.

`DataPlane` owns one `EnvoyProcess` (envoy_process.py) serving `envoy_config`'s resources.
`publish(replicas)` writes the next version of the xDS files: serve mode (the model's calls go
straight to the replicas) while any replica takes requests, proxy mode (to the Python
activator) otherwise; draining replicas stay in EDS, marked DRAINING, so that their requests
in flight finish while no new ones arrive. `sample()` reads what the autoscaler needs (requests
in flight, waiting and arrived at the replicas' clusters), `hosts()` the same per replica, and
`request_counts()` and `latency()` the calls Envoy answered from the replicas, for /metrics.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from . import envoy_config as ec
from .envoy_process import EnvoyProcess, EnvoyStartError, cluster_load, parse_stats

REPLICA_CLUSTERS = (ec.REPLICAS, ec.REPLICAS_GRPC)
LOAD_FILTER = r"^cluster\.replicas(-grpc)?\.(upstream_rq_(active|pending_active|total)|version_text)$"
COUNTS_FILTER = (r"^(vhost\.aifn\.route\.(infer|model)\.upstream_rq_[0-9]{3}"
                 r"|cluster\.replicas-grpc\.grpc\.inference\.GRPCInferenceService\.[A-Za-z]+\.[0-9]+)$")
LATENCY_FILTER = r"^vhost\.aifn\.route\.(infer|model)\.upstream_rq_time$"
ROUTE_CODE = re.compile(r"^vhost\.aifn\.route\.(infer|model)\.upstream_rq_([0-9]{3})$")
GRPC_CODE = re.compile(r"^cluster\.replicas-grpc\.grpc\.inference\.GRPCInferenceService\.([A-Za-z]+)\.([0-9]+)$")
GRPC_STATUS_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                     "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
                     "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


class ListenerError(EnvoyStartError):
    """Envoy could not bind a listener's address; the message names it."""


@dataclass(frozen=True)
class Load:
    """Requests at the replicas through Envoy: in flight, waiting for a slot, arrived ever; and the EDS version applied."""

    active: int = 0
    pending: int = 0
    total: int = 0
    applied_version: int = 0

    @property
    def demand(self) -> int:
        return self.active + self.pending


@dataclass(frozen=True)
class Latency:
    """A cumulative histogram in seconds: count at or under each bound, the sum and the count of all."""

    buckets: dict[float, float]
    sum: float = 0.0
    count: float = 0.0


@dataclass(frozen=True)
class HostLoad:
    """One replica's requests through Envoy (HTTP and gRPC ports together)."""

    active: int = 0
    total: int = 0


class DataPlane:
    """Envoy in front of one function: its process, the xDS files it reads, its admin API."""

    def __init__(self, route: ec.FunctionRoute, workdir: Path, *, max_connections: int,
                 latency_buckets: tuple[float, ...] = ()) -> None:
        self.route = route
        self.paths = ec.XdsPaths(str(workdir / "xds"))
        buckets_ms = tuple(bound * 1000 for bound in latency_buckets)
        self.envoy = EnvoyProcess(ec.bootstrap(self.paths, max_connections=max_connections, latency_buckets_ms=buckets_ms),
                                  workdir=workdir / "envoy")
        self.version = 0
        self._published: list[ec.ReplicaAddress] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, timeout: float = 30.0) -> list[int]:
        """Start Envoy in proxy mode with no replica; returns the listeners' ports (HTTP first, then gRPC if any).

        ListenerError when a port cannot be bound; Envoy is stopped then.
        """
        await asyncio.to_thread(self._write, [])
        self.envoy.start()
        await asyncio.to_thread(self.envoy.wait_ready, timeout)
        self._session = aiohttp.ClientSession(self.envoy.admin_url, timeout=aiohttp.ClientTimeout(total=5))
        async with self._session.get("/listeners?format=json") as response:
            document = json.loads(await response.read())
        ports = {status.get("name"): int(status.get("local_address", {}).get("socket_address", {}).get("port_value", 0))
                 for status in document.get("listener_statuses", [])}
        wanted = [ec.LISTENER] + ([f"{ec.LISTENER}-grpc"] if self.route.grpc_port is not None else [])
        if not all(ports.get(name) for name in wanted):
            raise ListenerError(_bind_error(self.envoy.log_tail()))
        return [ports[name] for name in wanted]

    async def stop_listening(self) -> None:
        """Drain the listeners (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY); requests in flight go on."""
        try:
            await asyncio.to_thread(self.envoy.admin, "/drain_listeners?graceful", "POST")
        except (OSError, ValueError):
            pass  # Envoy is gone or never started

    @property
    def _admin(self) -> aiohttp.ClientSession:
        """The admin API's client; EnvoyStartError until start() has seen Envoy ready."""
        if self._session is None:
            raise EnvoyStartError("envoy is not started yet")
        return self._session

    async def publish(self, replicas: list[ec.ReplicaAddress]) -> int:
        """Tell Envoy the replica set (unchanged sets are not rewritten); returns the version that carries it."""
        if replicas != self._published:
            await asyncio.to_thread(self._write, replicas)
        return self.version

    async def sample(self) -> Load:
        """The replicas' clusters' load, summed over HTTP and gRPC."""
        stats = await self._stats(LOAD_FILTER)
        loads = [cluster_load(stats, cluster) for cluster in REPLICA_CLUSTERS]
        version = stats.get(f"cluster.{ec.REPLICAS}.version_text", "")
        return Load(sum(c.active for c in loads), sum(c.pending for c in loads), sum(c.total for c in loads),
                    int(version) if isinstance(version, str) and version.isdigit() else 0)

    async def hosts(self) -> dict[int, HostLoad]:
        """Per replica HTTP and gRPC port: its requests in flight and served through Envoy."""
        async with self._admin.get("/clusters?format=json") as response:
            return parse_host_loads(json.loads(await response.read()))

    async def request_counts(self) -> dict[tuple[str, str], int]:
        """Calls answered by the replicas through Envoy, by (endpoint, code): infer/model with the HTTP status,
        grpc-<Method> with the gRPC status name, as the activator labels its own.

        Route stats count the answer the client got: after a retry (envoy_config.PYTHON_SECOND_OPINION)
        the activator's, which the activator does not count again.
        """
        return parse_request_counts(await self._stats(COUNTS_FILTER))

    async def latency(self) -> Latency:
        """Seconds the model's calls took at the replicas through Envoy (its routes' upstream_rq_time, merged)."""
        params = {"format": "prometheus", "histogram_buckets": "cumulative", "filter": LATENCY_FILTER}
        async with self._admin.get("/stats", params=params) as response:
            return parse_latency(await response.text())

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await asyncio.to_thread(self.envoy.stop, 5.0, False)

    async def _stats(self, pattern: str) -> dict[str, int | str]:
        async with self._admin.get("/stats", params={"format": "json", "filter": pattern}) as response:
            return parse_stats(json.loads(await response.read()))

    def _write(self, replicas: list[ec.ReplicaAddress]) -> None:
        self.version += 1
        mode: ec.Mode = "serve" if any(not r.draining for r in replicas) else "proxy"
        self.envoy.write_xds(ec.xds_files(self.route, self.paths, mode, replicas, str(self.version)))
        self._published = list(replicas)


def parse_host_loads(clusters: dict[str, Any]) -> dict[int, HostLoad]:
    """Envoy's `/clusters?format=json` as the replicas' load by port (HTTP and gRPC ports alike)."""
    result: dict[int, HostLoad] = {}
    for cluster in clusters.get("cluster_statuses", []):
        if cluster.get("name") not in REPLICA_CLUSTERS:
            continue
        for host in cluster.get("host_statuses", []):
            port = int(host.get("address", {}).get("socket_address", {}).get("port_value", 0))
            values = {s.get("name"): int(s.get("value", 0) or 0) for s in host.get("stats", [])}
            result[port] = HostLoad(values.get("rq_active", 0), values.get("rq_total", 0))
    return result


def parse_request_counts(stats: dict[str, int | str]) -> dict[tuple[str, str], int]:
    """Parsed stats as requests by (endpoint, code): route stats by HTTP status, gRPC stats by status name."""
    counts: dict[tuple[str, str], int] = {}
    for name, value in stats.items():
        if not isinstance(value, int) or not value:
            continue
        if match := ROUTE_CODE.match(name):
            key = (match.group(1), match.group(2))
        elif match := GRPC_CODE.match(name):
            code = int(match.group(2))
            key = (f"grpc-{match.group(1)}", GRPC_STATUS_NAMES[code] if code < len(GRPC_STATUS_NAMES) else str(code))
        else:
            continue
        counts[key] = counts.get(key, 0) + value
    return counts


def parse_latency(prometheus_text: str) -> Latency:
    """Envoy's route latency histograms (Prometheus text, milliseconds) merged into one, in seconds."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for family in text_string_to_metric_families(prometheus_text):
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("le") != "+Inf":
                bound = round(float(sample.labels["le"]) / 1000, 9)
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                total += sample.value / 1000
            elif sample.name.endswith("_count"):
                count += sample.value
    return Latency(buckets, total, count)


def _bind_error(log: str) -> str:
    """The line of Envoy's log that says why a listener did not bind."""
    lines = [line for line in log.splitlines() if "cannot bind" in line or "Address already in use" in line]
    return (lines[-1].split("] ", 1)[-1] if lines else "a listener could not be added (see Envoy's log)").strip()
