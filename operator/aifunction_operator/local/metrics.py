"""The gateway's Prometheus metrics, in a registry of their own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

COLD_START_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    """Requests by code, in-flight, queue depth, replicas, cold starts (and their timeouts), proxied latency."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.registry = CollectorRegistry()
        one = ["function"]
        self.requests = Counter(
            "aifn_requests", "Requests answered by the gateway, by endpoint and HTTP status code",
            ["function", "endpoint", "code"], registry=self.registry,
        )
        self.replicas = Gauge("aifn_replicas", "Triton replicas by state", ["function", "state"], registry=self.registry)
        self.cold_starts = Counter(
            "aifn_cold_starts", "Triton replica starts; from_zero=true when no replica was ready",
            ["function", "from_zero"], registry=self.registry,
        )
        # Single-label metrics are bound to this function once, so the request path does no label lookups.
        self.in_flight = Gauge(
            "aifn_requests_in_flight", "Requests inside the gateway (proxied or queued)", one, registry=self.registry
        ).labels(function)
        self.queue_depth = Gauge(
            "aifn_queue_depth", "Requests waiting for a ready replica", one, registry=self.registry
        ).labels(function)
        self.cold_start_seconds = Histogram(
            "aifn_cold_start_seconds", "Seconds from starting a replica to its model being ready", one,
            buckets=COLD_START_BUCKETS, registry=self.registry,
        ).labels(function)
        self.cold_start_timeouts = Counter(
            "aifn_cold_start_timeouts", "Replica starts not ready within startupTimeout (also counted as replica failures)", one,
            registry=self.registry,
        ).labels(function)
        self.replica_failures = Counter(
            "aifn_replica_failures", "Replicas that failed to start or exited on their own", one, registry=self.registry
        ).labels(function)
        self.latency = Histogram(
            "aifn_request_duration_seconds", "Seconds a request spent in the gateway, queueing included", one,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        ).labels(function)
        self.proxy_latency = Histogram(
            "aifn_proxy_duration_seconds", "Seconds a proxied request took at the Triton replica", one,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        ).labels(function)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
