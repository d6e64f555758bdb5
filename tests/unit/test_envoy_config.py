"""local/envoy_config.py: the Envoy resources of `aifn run` for a few functions, checked as data and by the real Envoy.

`envoy --mode validate` loads a bootstrap's static resources only (file-based xDS is not read in
validate mode), so each function's listener, routes and clusters are validated inline
(`static_bootstrap`), and the real bootstrap is validated next to its dynamic files.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.envoy import envoy_or_skip

from aifunction_operator.local import envoy_config as ec
from aifunction_operator.handler.routes import parse_routes
from aifunction_operator.local import gateway

FUNCTIONS = {
    "http-unlimited": ec.FunctionRoute(model="digits", port=18080, activator_port=18081, timeout_seconds=60),
    "grpc-cc4": ec.FunctionRoute(model="digits", port=18080, activator_port=18081, timeout_seconds=5,
                                 container_concurrency=4, queue_limit=10, max_body_bytes=1024, activator_grpc_port=18082),
    "dotted-cc1": ec.FunctionRoute(model="my.model-v2", port=9000, activator_port=9001, timeout_seconds=300,
                                   container_concurrency=1, startup_timeout=30),
    # A handler with declared routes (the built-in OpenAI embeddings handler's), as serve.py passes them.
    "handler-routes": ec.FunctionRoute(model="minilm", port=9000, activator_port=9001, timeout_seconds=60,
                                       python_paths=("/", "/invoke"), python_patterns=tuple(r.pattern.pattern for r in parse_routes(
                                           ["POST /v1/embeddings", "GET /v1/models", "GET /v1/models/{model}"], "h:f"))),
}
REPLICAS = [ec.ReplicaAddress(20001, 20002), ec.ReplicaAddress(20011, 20012)]
MODES: tuple[ec.Mode, ...] = ("proxy", "serve")


def routes_by_name(fn: ec.FunctionRoute, mode: ec.Mode) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in ec.route_configuration(fn, mode)["virtual_hosts"][0]["routes"]}


def first_route(fn: ec.FunctionRoute, mode: ec.Mode, method: str, path: str) -> dict[str, Any]:
    """The route Envoy would pick for an HTTP request (the subset of matching these routes use)."""
    for route in ec.route_configuration(fn, mode)["virtual_hosts"][0]["routes"]:
        match = route["match"]
        headers = {h["name"]: h for h in match.get("headers", [])}
        if "content-type" in headers or "content-encoding" in headers:
            continue  # gRPC, or compressed bodies only
        if ":method" in headers and not re.fullmatch(headers[":method"]["string_match"]["safe_regex"]["regex"], method):
            continue
        bare = path.split("?")[0]
        if ("path" in match and match["path"] == bare) or ("prefix" in match and bare.startswith(match["prefix"])) \
                or ("safe_regex" in match and re.fullmatch(match["safe_regex"]["regex"], bare)):
            return route
    raise AssertionError(f"no route for {method} {path}")


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_model_calls_go_to_the_activator_or_the_replicas(name: str, mode: ec.Mode) -> None:
    fn = FUNCTIONS[name]
    expected = ec.REPLICAS if mode == "serve" else ec.ACTIVATOR
    limit = fn.timeout_seconds if mode == "serve" else fn.timeout_seconds + fn.startup_timeout
    for method, tail in [("POST", "/infer"), ("GET", ""), ("GET", "/ready"), ("POST", "/versions/1/infer"), ("GET", "/config")]:
        route = first_route(fn, mode, method, f"/v2/models/{fn.model}{tail}")
        action = route["route"]
        assert (action["cluster"], action["timeout"]) == (expected, f"{limit:g}s"), (method, tail)
        # Triton's 500 to an inference it could not parse gets the activator's second opinion (a 400 naming why).
        assert ("retry_policy" in action) == (mode == "serve" and tail.endswith("/infer")), (method, tail)
    for path in ec.PYTHON_PATHS + ("/aifn/replicas/0/metrics", "/v2/models/other/ready"):  # Python names other models
        assert first_route(fn, mode, "GET", path)["route"]["cluster"] == ec.ACTIVATOR, path


def test_a_handlers_declared_routes_reach_the_activator_and_nothing_else_under_them() -> None:
    fn = FUNCTIONS["handler-routes"]
    for mode in MODES:
        for method, path in [("POST", "/v1/embeddings"), ("GET", "/v1/models"), ("GET", "/v1/models/minilm"), ("POST", "/invoke")]:
            assert first_route(fn, mode, method, path)["route"]["cluster"] == ec.ACTIVATOR, (mode, path)
        for path in ("/v1/models/a/b", "/v1/embeddingsx", "/v1"):
            assert first_route(fn, mode, "GET", path)["direct_response"]["status"] == 404, (mode, path)


REFUSED = [
    ("POST", "/v2/models/MODEL/trace/setting", 403, "not exposed"),
    ("POST", "/v2/repository/index", 403, "repository"),
    ("POST", "/v2/systemsharedmemory/register", 403, "shared-memory"),
    ("POST", "/v2/logging", 403, "logging"),
    ("DELETE", "/v2/models/MODEL", 405, "GET or POST"),
    ("GET", "/v3/anything", 404, "Not Found"),
]


@pytest.mark.parametrize("method,path,status,words", REFUSED)
def test_everything_else_is_answered_by_envoy(method: str, path: str, status: int, words: str) -> None:
    for fn in FUNCTIONS.values():
        route = first_route(fn, "serve", method, path.replace("MODEL", fn.model))
        assert route["direct_response"]["status"] == status
        assert words in route["direct_response"]["body"]["inline_string"]


def test_the_allowed_model_tail_is_the_gateways() -> None:
    """envoy_config keeps the gateway's lists (it may not import gateway.py: envoy_config is pure)."""
    assert ec.MODEL_TAIL == gateway.MODEL_TAIL.pattern
    assert ec.ADMIN_APIS == gateway.ADMIN_PREFIXES


def test_replica_clusters_limit_each_replica_to_container_concurrency() -> None:
    fn = FUNCTIONS["grpc-cc4"]
    clusters = {c["name"]: c for c in ec.clusters(fn, ec.XdsPaths("/x"))}
    http = clusters[ec.REPLICAS]
    assert http["lb_policy"] == "LEAST_REQUEST"
    assert http["circuit_breakers"]["per_host_thresholds"] == [{"max_connections": 4}]
    assert http["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 10
    grpc = clusters[ec.REPLICAS_GRPC]
    assert grpc["circuit_breakers"]["per_host_thresholds"] == [{"max_connections": 1}]
    options = grpc["typed_extension_protocol_options"][ec.HTTP_OPTIONS_KEY]["explicit_http_config"]
    assert options["http2_protocol_options"] == {"max_concurrent_streams": 4}
    assert http["typed_extension_protocol_options"][ec.HTTP_OPTIONS_KEY]["explicit_http_config"] == {
        "http_protocol_options": {}}
    unlimited = {c["name"]: c for c in ec.clusters(FUNCTIONS["http-unlimited"], ec.XdsPaths("/x"))}
    assert "per_host_thresholds" not in unlimited[ec.REPLICAS]["circuit_breakers"]
    assert set(unlimited) == {ec.ACTIVATOR, ec.REPLICAS}  # no gRPC side without a gRPC activator


def test_local_replies_are_json_with_the_gateways_limits() -> None:
    fn = FUNCTIONS["grpc-cc4"]
    reply = ec.local_reply_config(fn)
    assert reply["body_format"]["content_type"] == "application/json"
    assert "%LOCAL_REPLY_BODY%" in reply["body_format"]["json_format"]["error"]
    by_flag = {tuple(m["filter"].get("response_flag_filter", {}).get("flags", ())): m for m in reply["mappers"]}
    assert by_flag[("UO",)]["status_code"] == 503
    assert by_flag[("UO",)]["headers_to_add"][0]["header"] == {"key": "Retry-After", "value": "1"}
    assert by_flag[("UT",)]["status_code"] == 504
    assert "1024 bytes" in json.dumps(reply["mappers"])
    filters = ec.listener(fn, ec.XdsPaths("/x"))["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    (buffer,) = [f for f in filters if f["name"] == "envoy.filters.http.buffer"]
    assert buffer["typed_config"]["max_request_bytes"] == 1024


@pytest.mark.parametrize("mode", MODES)
def test_xds_files_are_written_in_a_safe_order(mode: ec.Mode) -> None:
    """Serve: replicas known (EDS) before routed to (RDS); proxy: routed away before removed."""
    paths = ec.XdsPaths("/x")
    files = list(ec.xds_files(FUNCTIONS["grpc-cc4"], paths, mode, REPLICAS, "7"))
    kinds = [Path(f).parent.name for f in files]
    assert set(kinds) == set(ec.XDS_KINDS)
    assert (kinds.index("rds") > kinds.index("eds-replicas")) == (mode == "serve")
    assert kinds.index("cds") > kinds.index("eds-replicas-grpc")  # a cluster's EDS file exists before the cluster
    for document in ec.xds_files(FUNCTIONS["grpc-cc4"], paths, mode, REPLICAS, "7").values():
        assert document["version_info"] == "7"
        if document["resources"][0]["@type"] == ec.ENDPOINTS_TYPE:
            assert len(document["resources"]) == 1  # file-based EDS takes one ClusterLoadAssignment per file


def validate(envoy: Path, config: Path) -> None:
    result = subprocess.run([str(envoy), "--mode", "validate", "-c", str(config), "--disable-hot-restart", "-l", "error"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"envoy rejected {config}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_the_real_envoy_accepts_the_resources(name: str, mode: ec.Mode, tmp_path: Path) -> None:
    envoy = envoy_or_skip()
    fn = FUNCTIONS[name]
    inline = tmp_path / "static.json"
    inline.write_text(json.dumps(ec.static_bootstrap(fn, mode, REPLICAS if mode == "serve" else [])))
    validate(envoy, inline)
    paths = ec.XdsPaths(str(tmp_path / "xds"))
    for path, document in ec.xds_files(fn, paths, mode, REPLICAS, "1").items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(document))
    dynamic = tmp_path / "bootstrap.json"
    dynamic.write_text(json.dumps(ec.bootstrap(paths)))
    validate(envoy, dynamic)


def test_stats_parsing_gives_the_load_and_the_applied_versions() -> None:
    from aifunction_operator.local.envoy_process import applied_versions, cluster_load, parse_stats

    stats = parse_stats({"stats": [
        {"name": "cluster.replicas.upstream_rq_active", "value": 3},
        {"name": "cluster.replicas.upstream_rq_pending_active", "value": 2},
        {"name": "cluster.replicas.upstream_rq_total", "value": 40},
        {"name": "cluster.replicas.upstream_rq_pending_overflow", "value": 1},
        {"name": "cluster.replicas.version_text", "value": "7"},
        {"name": "http.aifn.rds.aifn.version_text", "value": "7"},
        {"name": "listener_manager.lds.version_text", "value": "6"},
        {"histograms": {"supported_quantiles": [50]}},
    ]})
    load = cluster_load(stats, ec.REPLICAS)
    assert (load.active, load.pending, load.total, load.pending_overflow, load.demand) == (3, 2, 40, 1, 5)
    assert cluster_load(stats, ec.REPLICAS_GRPC).demand == 0
    assert applied_versions(stats) == {"lds": "6", "rds": "7", "eds-replicas": "7"}
