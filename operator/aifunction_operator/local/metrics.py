"""`aifn run`'s Prometheus metrics, in a registry of their own (served at /metrics).

Requests are counted where they are answered: the Python side counts its own (health, status,
cold calls), Envoy the calls it sends straight to the replicas (data_plane.request_counts and
latency); `render` adds Envoy's to `aifn_requests_total`, `aifn_requests_in_flight` and the two
latency histograms (Envoy's buckets are set to LATENCY_BUCKETS), so the names and labels are
the same whichever side answered.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .data_plane import Latency

COLD_START_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    """Requests by code, in-flight, queue depth, replicas, cold starts (and their timeouts), proxied latency."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.registry = CollectorRegistry()
        self._python = CollectorRegistry()  # counted here, merged with Envoy's by _WithEnvoy
        self._envoy_counts: Mapping[tuple[str, str], int] = {}
        self._envoy_in_flight = 0
        self._envoy_latency = Latency({})
        one = ["function"]
        self.requests = Counter(
            "aifn_requests", "Requests answered by the gateway, by endpoint and HTTP status code",
            ["function", "endpoint", "code"], registry=self._python,
        )
        self.replicas = Gauge("aifn_replicas", "Triton replicas by state", ["function", "state"], registry=self.registry)
        self.cold_starts = Counter(
            "aifn_cold_starts", "Triton replica starts; from_zero=true when no replica was ready",
            ["function", "from_zero"], registry=self.registry,
        )
        # Single-label metrics are bound to this function once, so the request path does no label lookups.
        self.in_flight = Gauge(
            "aifn_requests_in_flight", "Requests inside the gateway (proxied or queued)", one, registry=self._python
        ).labels(function)
        self.registry.register(_WithEnvoy(self))
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
            buckets=LATENCY_BUCKETS, registry=self._python,
        ).labels(function)
        self.proxy_latency = Histogram(
            "aifn_proxy_duration_seconds", "Seconds a proxied request took at the Triton replica", one,
            buckets=LATENCY_BUCKETS, registry=self._python,
        ).labels(function)

    def render(self, envoy_counts: Mapping[tuple[str, str], int], envoy_in_flight: int,
               envoy_latency: Latency | None = None) -> bytes:
        """The Prometheus text exposition of every metric; `envoy_counts`: requests Envoy answered from the
        replicas by (endpoint, code), `envoy_in_flight`: its requests at (or waiting for) a replica,
        `envoy_latency`: how long those took."""
        self._envoy_counts, self._envoy_in_flight = envoy_counts, envoy_in_flight
        self._envoy_latency = envoy_latency or Latency({})
        return generate_latest(self.registry)


class _WithEnvoy:
    """aifn_requests_total, aifn_requests_in_flight and the latency histograms: Python's values plus Envoy's."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        counts = dict(metrics._envoy_counts)
        in_flight = float(metrics._envoy_in_flight)
        for family in metrics._python.collect():
            if family.name == "aifn_requests":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        key = (sample.labels["endpoint"], sample.labels["code"])
                        counts[key] = counts.get(key, 0) + sample.value
            elif family.name == "aifn_requests_in_flight":
                in_flight += sum(sample.value for sample in family.samples)
            elif family.name in ("aifn_request_duration_seconds", "aifn_proxy_duration_seconds"):
                yield _with_envoy_latency(family, metrics.function, metrics._envoy_latency)
        requests = CounterMetricFamily("aifn_requests", "Requests answered, by endpoint and HTTP (or gRPC) status code",
                                       labels=["function", "endpoint", "code"])
        for (endpoint, code), value in sorted(counts.items()):
            requests.add_metric([metrics.function, endpoint, code], value)
        yield requests
        gauge = GaugeMetricFamily("aifn_requests_in_flight", "Requests inside aifn run (at a replica or waiting for one)",
                                  labels=["function"])
        gauge.add_metric([metrics.function], in_flight)
        yield gauge


def _with_envoy_latency(family: Metric, function: str, envoy: Latency) -> Metric:
    """`family` (one of Python's latency histograms) with Envoy's observations added, bucket by bucket."""
    python = {sample.labels.get("le"): sample.value for sample in family.samples if sample.name.endswith("_bucket")}
    total = sum(s.value for s in family.samples if s.name.endswith("_sum")) + envoy.sum
    merged = HistogramMetricFamily(family.name, family.documentation, labels=["function"])
    buckets = [(le, value + envoy.buckets.get(round(float(le), 9), 0.0)) for le, value in python.items() if le != "+Inf"]
    merged.add_metric([function], [*buckets, ("+Inf", python.get("+Inf", 0.0) + envoy.count)], total)
    return merged
