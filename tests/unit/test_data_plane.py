"""local/data_plane.py: what `aifn run` reads from Envoy's admin API, from documents shaped as Envoy 1.40 writes them."""

from __future__ import annotations

import pytest

from aifunction_operator.local.data_plane import HostLoad, parse_host_loads, parse_latency, parse_request_counts

GRPC = "cluster.replicas-grpc.grpc.inference.GRPCInferenceService"


@pytest.mark.parametrize("stats,expected", [
    ({"vhost.aifn.route.infer.upstream_rq_200": 7, "vhost.aifn.route.infer.upstream_rq_400": 2}, {("infer", "200"): 7, ("infer", "400"): 2}),
    ({"vhost.aifn.route.model.upstream_rq_200": 3, "vhost.aifn.route.model.upstream_rq_2xx": 3}, {("model", "200"): 3}),
    ({f"{GRPC}.ModelInfer.0": 4, f"{GRPC}.ModelInfer.5": 1, f"{GRPC}.ModelInfer.3": 1},
     {("grpc-ModelInfer", "OK"): 4, ("grpc-ModelInfer", "NOT_FOUND"): 1, ("grpc-ModelInfer", "INVALID_ARGUMENT"): 1}),
    ({f"{GRPC}.ModelInfer.total": 6, "vhost.aifn.route.infer.upstream_rq_500": 0, "cluster.activator.upstream_rq_200": 9}, {}),
], ids=["http codes", "classes left out", "grpc status names", "totals, zeros and other clusters left out"])
def test_request_counts_by_endpoint_and_code(stats: dict, expected: dict) -> None:
    assert parse_request_counts(stats) == expected


def test_host_loads_by_replica_port_only_for_the_replica_clusters() -> None:
    def host(port: int, active: str, total: str) -> dict:
        return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "stats": [{"name": "rq_active", "type": "GAUGE", "value": active}, {"name": "rq_total", "value": total},
                          {"name": "cx_active", "type": "GAUGE"}]}
    document = {"cluster_statuses": [
        {"name": "replicas", "host_statuses": [host(20001, "2", "10"), host(18081, "0", "1")]},
        {"name": "replicas-grpc", "host_statuses": [host(20002, "1", "3")]},
        {"name": "activator", "host_statuses": [host(9999, "5", "50")]},
    ]}
    assert parse_host_loads(document) == {20001: HostLoad(2, 10), 18081: HostLoad(0, 1), 20002: HostLoad(1, 3)}


def test_latency_merges_the_routes_in_seconds() -> None:
    text = "\n".join([
        "# TYPE envoy_vhost_route_upstream_rq_time histogram",
        *(f'envoy_vhost_route_upstream_rq_time_bucket{{envoy_virtual_host="aifn",envoy_route="{route}",le="{le}"}} {n}'
          for route in ("infer", "model") for le, n in (("2.5", 1), ("5", 3), ("+Inf", 4))),
        'envoy_vhost_route_upstream_rq_time_sum{envoy_virtual_host="aifn",envoy_route="infer"} 12.5',
        'envoy_vhost_route_upstream_rq_time_count{envoy_virtual_host="aifn",envoy_route="infer"} 4',
        'envoy_vhost_route_upstream_rq_time_sum{envoy_virtual_host="aifn",envoy_route="model"} 7.5',
        'envoy_vhost_route_upstream_rq_time_count{envoy_virtual_host="aifn",envoy_route="model"} 4',
    ]) + "\n"
    merged = parse_latency(text)
    assert merged.buckets == {0.0025: 2, 0.005: 6}
    assert (merged.sum, merged.count) == (pytest.approx(0.02), 8)
