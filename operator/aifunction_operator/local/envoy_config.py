"""Envoy configuration for `aifn run` (pure, no I/O): Envoy forwards, Python decides.

One listener serves HTTP/1.1 and h2c (gRPC) on one port (codec AUTO). Its route table sends
the function's model calls either to the Python *activator* (no replica is ready: it queues,
starts a replica, forwards once ready) or straight to the Triton *replicas* (warm traffic),
like Knative's serverless service in proxy and serve modes. Everything else is Envoy's own
reply, shaped as the aiohttp gateway's JSON `{"error": "..."}`.

xDS delivery is file based (`path_config_source` + `watched_directory`), one file per
subscription, each in its own directory so that a move into one directory reloads one subscription:

- LDS: the listener (written once; a listener update would drain open connections),
- RDS: the route table (the proxy/serve switch: only the model routes' cluster changes),
- CDS: the clusters (written once),
- EDS: the replicas' addresses, one file per replica cluster (HTTP, gRPC), since a file-based
  EDS subscription takes exactly one ClusterLoadAssignment (the replica set; an EDS update keeps
  the clusters' connection pools, a CDS update would rebuild them).

Files are replaced whole by rename (write a temporary file in the same directory, then
os.replace: Envoy reloads on the move and never reads a half-written file). Python writes EDS
before RDS when going to serve mode (replicas known before routed to) and RDS before EDS when
going back to proxy mode (no request routed to a replica being removed); EDS files always
before CDS (a cluster's EDS file must exist when the cluster arrives).

Per-replica concurrency (containerConcurrency): Triton's HTTP upstream speaks HTTP/1.1, one
request per connection at a time, so `per_host_thresholds.max_connections = cc` caps each
replica at cc requests; more wait in the cluster's pending queue (bounded by
`max_pending_requests`, 503 with Retry-After beyond; a request waiting for its connection to be
established counts as pending too). For gRPC (HTTP/2 multiplexes streams on one connection) the
gRPC replica cluster allows one connection per host and at most cc concurrent streams on it
(`max_concurrent_streams`): Envoy queues streams over that as pending.
The limit is exact with one Envoy worker (`--concurrency 1`). With N workers each worker's pool
keeps one connection per host even over the limit (Envoy's rule against a stuck pool), so a
replica may see up to cc + N - 1 requests (seen: 4 workers, cc 1, 12 requests at once: 4 at the
replica at a time; 1 worker: 1 at a time); idle upstream connections close after
UPSTREAM_IDLE so that one worker's idle connections do not hold another worker's slots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
GRPC_STATS_TYPE = "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig"
BUFFER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
BUFFER_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
CONNECTIONS_MONITOR_TYPE = ("type.googleapis.com/envoy.extensions.resource_monitors."
                            "downstream_connections.v3.DownstreamConnectionsConfig")
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

LISTENER = "aifn"
ROUTES = "aifn"
ACTIVATOR = "activator"  # the Python gateway (HTTP/1.1): health, status, metrics, cold requests
ACTIVATOR_GRPC = "activator-grpc"  # the Python gRPC side (h2c)
REPLICAS = "replicas"  # the Triton replicas' HTTP ports (EDS)
REPLICAS_GRPC = "replicas-grpc"  # the Triton replicas' gRPC ports (EDS)
XDS_KINDS = ("lds", "rds", "cds", f"eds-{REPLICAS}", f"eds-{REPLICAS_GRPC}")  # file-based EDS: one file per cluster

GRPC_SERVICE = "/inference.GRPCInferenceService/"
GRPC_HEALTH = "/grpc.health.v1.Health/Check"
GRPC_SERVER_METHODS = ("ServerLive", "ServerReady", "ServerMetadata")  # answered by Python, as today
GRPC_MODEL_METHODS = ("ModelReady", "ModelMetadata", "ModelInfer", "ModelConfig", "ModelStatistics")
GRPC_STREAM_METHOD = "ModelStreamInfer"
ADMIN_APIS = "repository|systemsharedmemory|cudasharedmemory|trace|logging"  # as gateway.ADMIN_PREFIXES
MODEL_TAIL = r"(/versions/[0-9]+)?(/(ready|config|stats|infer|generate|generate_stream))?"  # as gateway.MODEL_TAIL
PYTHON_PATHS = ("/v2/health/live", "/v2/health/ready", "/v2", "/metrics", "/aifn/status")
UPSTREAM_IDLE = "2s"  # an idle connection to a replica closes after this (see containerConcurrency above)
UNLIMITED = 1_000_000_000  # Envoy's circuit breakers take a number: "no limit" is a big one
# Triton answers 500 to bodies it cannot parse (not JSON, no 'inputs', data that does not fit its
# shape) and a text/plain 400 to a bad binary header: such an inference is retried once on the
# activator, which sits in the replicas' cluster at priority 1 (used only by a retry that excludes
# priority 0), checks the body and names the problem (400), or passes the request to a replica
# again (Triton's own 400 for a wrong shape or datatype, or a genuine 500, is then the answer).
PYTHON_SECOND_OPINION = {
    "retry_on": "retriable-status-codes", "retriable_status_codes": [400, 500], "num_retries": 1,
    "retry_priority": {"name": "envoy.retry_priorities.previous_priorities", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
        "update_frequency": 1}},
}
ACTIVATOR_PRIORITY = 1
MAX_HEADERS_KB = 8  # request line and headers, as the aiohttp gateway's 8190 bytes before

Mode = Literal["proxy", "serve"]


@dataclass(frozen=True)
class FunctionRoute:
    """What Envoy needs to know of one function served by `aifn run`."""

    model: str
    port: int  # the listener's port (`aifn run --port`)
    activator_port: int  # the Python gateway on loopback
    timeout_seconds: float  # spec.timeoutSeconds: a warm request's limit (504)
    container_concurrency: int = 0  # requests at once per replica; 0: unlimited
    queue_limit: int = 256  # requests waiting for a replica slot (503 with Retry-After beyond)
    max_body_bytes: int = 16 * 1024 * 1024  # 413 over this
    startup_timeout: float = 120.0  # what a cold request may wait on the activator, on top of timeout_seconds
    read_timeout: float = 60.0  # a request's headers must arrive within this
    retry_after: int = 1  # the Retry-After of Envoy's own 503s
    activator_grpc_port: int | None = None  # the Python gRPC side; None: no gRPC routes
    address: str = "127.0.0.1"
    grpc_port: int | None = None  # a second listener, same routes (`aifn run --grpc-port`); None: gRPC on `port`
    python_paths: tuple[str, ...] = ()  # more exact paths answered by Python (the handler's `/`, `/invoke`)
    python_patterns: tuple[str, ...] = ()  # RE2 patterns of paths answered by Python (the handler's declared routes)


@dataclass(frozen=True)
class ReplicaAddress:
    """One ready Triton replica."""

    http_port: int
    grpc_port: int | None = None
    host: str = "127.0.0.1"
    draining: bool = False  # no new requests (EDS health DRAINING); its requests in flight finish


@dataclass(frozen=True)
class XdsPaths:
    """Where the dynamic resources live: one directory per resource type, one file in each."""

    root: str

    def directory(self, kind: str) -> str:
        return f"{self.root}/{kind}"

    def file(self, kind: str) -> str:
        return f"{self.root}/{kind}/{kind}.json"

    def config_source(self, kind: str) -> dict[str, Any]:
        """A file-based config source, reloaded when a file is moved into its directory."""
        return {"resource_api_version": "V3", "path_config_source": {
            "path": self.file(kind), "watched_directory": {"path": self.directory(kind)}}}


def discovery_response(version: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of one file-based xDS file."""
    return {"version_info": version, "resources": resources}


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def overload_manager(max_connections: int) -> dict[str, Any]:
    """At most `max_connections` open downstream connections (`aifn run --max-connections`); Envoy refuses more."""
    return {"resource_monitors": [{"name": "envoy.resource_monitors.global_downstream_max_connections", "typed_config": {
        "@type": CONNECTIONS_MONITOR_TYPE, "max_active_downstream_connections": max_connections}}]}


def bootstrap(paths: XdsPaths, *, admin_port: int = 0, node_id: str = "aifn-run",
              max_connections: int = 4096, latency_buckets_ms: tuple[float, ...] = ()) -> dict[str, Any]:
    """Envoy's bootstrap: admin on loopback (0: an ephemeral port, see --admin-address-path), LDS and CDS from files;
    the routes' latency histograms in `latency_buckets_ms` (Envoy's defaults when empty)."""
    document: dict[str, Any] = {
        "node": {"id": node_id, "cluster": node_id},
        "admin": {"address": _address("127.0.0.1", admin_port)},
        "dynamic_resources": {"lds_config": paths.config_source("lds"), "cds_config": paths.config_source("cds")},
        "overload_manager": overload_manager(max_connections),
    }
    if latency_buckets_ms:
        document["stats_config"] = {"histogram_bucket_settings": [
            {"match": {"prefix": f"vhost.{LISTENER}.route."}, "buckets": list(latency_buckets_ms)}]}
    return document


# ---- the listener and its error replies -------------------------------------------------------


def _status_filter(code: int, op: str = "EQ") -> dict[str, Any]:
    return {"status_code_filter": {"comparison": {"op": op, "value": {"default_value": code, "runtime_key": "_"}}}}


def _flags_filter(*flags: str) -> dict[str, Any]:
    return {"response_flag_filter": {"flags": list(flags)}}


def _mapper(filter_: dict[str, Any], body: str, status: int | None = None,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    mapper: dict[str, Any] = {"filter": filter_, "body": {"inline_string": body}}
    if status is not None:
        mapper["status_code"] = status
    if headers:
        mapper["headers_to_add"] = [{"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                                    for k, v in headers.items()]
    return mapper


def local_reply_config(fn: FunctionRoute) -> dict[str, Any]:
    """Envoy's own replies as the gateway's JSON `{"error": "..."}`, with the gateway's wording and headers.

    Each mapper sets the message (LOCAL_REPLY_BODY) of one kind of reply; the body format wraps any
    local reply (these, the routes' direct responses, Envoy's others) in JSON naming the request.
    Triton's own answers are not local replies and pass through untouched.
    """
    retry = {"Retry-After": str(fn.retry_after)}
    timeout = f"{fn.timeout_seconds:g}"
    mappers = [
        _mapper(_flags_filter("UO"), f"too many requests waiting for a Triton replica (limit {fn.queue_limit} "
                f"waiting, containerConcurrency {fn.container_concurrency or 'unlimited'} per replica); retry", 503, retry),
        _mapper(_flags_filter("UH", "NR"), "no Triton replica is ready; retry", 503, retry),
        _mapper(_flags_filter("UT"), f"the Triton replica did not answer within timeoutSeconds ({timeout}s)", 504),
        _mapper(_flags_filter("UF", "UC", "UR", "LR", "URX", "UPE"),
                "the Triton replica failed while serving the request; it is replaced", 502),
        # gRPC: a message over the limit is RESOURCE_EXHAUSTED, as gRPC's own size limit says it.
        _mapper({"and_filter": {"filters": [_status_filter(413), {"header_filter": {"header": {
            "name": "content-type", "string_match": {"prefix": "application/grpc"}}}}]}},
            f"request message is larger than the gateway's limit of {fn.max_body_bytes} bytes (--max-body-bytes)",
            None, {"grpc-status": "8"}),
        _mapper(_status_filter(413), f"request body is larger than the gateway's limit of {fn.max_body_bytes} bytes "
                "(--max-body-bytes)"),
        _mapper(_flags_filter("SI"), f"stream idle for {timeout}s (timeoutSeconds) with no message either way; "
                "it is closed so that it does not hold a Triton replica", 504),
        _mapper(_status_filter(408), f"request body (or headers): not received within {fn.read_timeout:g}s "
                "(--read-timeout); the connection is closed"),
        _mapper(_status_filter(431), f"the request line and headers are over the gateway's limit of {MAX_HEADERS_KB} KiB "
                "(or more than 100 headers)"),
        _mapper(_status_filter(503), "the function is unavailable; retry", None, retry),
    ]
    return {
        "mappers": mappers,
        "body_format": {"json_format": {"error": "%REQ(:METHOD)% %REQ(:PATH)%: %LOCAL_REPLY_BODY%"},
                        "content_type": "application/json"},
    }


def _router_filters(fn: FunctionRoute) -> list[dict[str, Any]]:
    return [
        {"name": "envoy.filters.http.buffer", "typed_config": {"@type": BUFFER_TYPE, "max_request_bytes": fn.max_body_bytes}},
        # gRPC calls by method and status, per upstream cluster (metrics.py reads the replicas' ones).
        {"name": "envoy.filters.http.grpc_stats", "typed_config": {"@type": GRPC_STATS_TYPE, "stats_for_all_methods": True,
                                                                   "enable_upstream_stats": False}},
        {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE, "suppress_envoy_headers": True}},
    ]


def listeners(fn: FunctionRoute, paths: XdsPaths) -> list[dict[str, Any]]:
    """The LDS resources: the listener on fn.port, and the same on fn.grpc_port when there is one."""
    streams_here = fn.activator_grpc_port is not None and fn.grpc_port is None
    result = [listener(fn, paths, whole_request_timeout=not streams_here)]
    if fn.grpc_port is not None:
        result.append(listener(fn, paths, name=f"{LISTENER}-grpc", port=fn.grpc_port))
    return result


def listener(fn: FunctionRoute, paths: XdsPaths, *, name: str = LISTENER, port: int | None = None,
             whole_request_timeout: bool = False) -> dict[str, Any]:
    """One listener: HTTP/1.1 and h2c on `port` (fn.port), routes from RDS, errors as JSON.

    With `whole_request_timeout` a request's body must arrive within read_timeout too (408); a
    listener carrying gRPC streams cannot have it (a stream's request lasts as long as the stream).
    """
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": LISTENER,
        "codec_type": "AUTO",  # HTTP/1.1 and HTTP/2 with prior knowledge (gRPC) on one port
        "generate_request_id": False,  # nothing reads x-request-id; a UUID per request costs CPU on the warm path
        "rds": {"route_config_name": ROUTES, "config_source": paths.config_source("rds")},
        "http_filters": _router_filters(fn),
        "local_reply_config": local_reply_config(fn),
        "request_headers_timeout": f"{fn.read_timeout:g}s",
        "max_request_headers_kb": MAX_HEADERS_KB,
        "http_protocol_options": {"header_key_format": {"proper_case_words": {}}},  # Retry-After, Content-Type
        **({"request_timeout": f"{fn.read_timeout:g}s"} if whole_request_timeout else {}),
        "common_http_protocol_options": {"idle_timeout": f"{fn.read_timeout:g}s"},
        "http2_protocol_options": {"max_concurrent_streams": 1024},
    }
    return {
        "@type": LISTENER_TYPE,
        "name": name,
        "address": _address(fn.address, fn.port if port is None else port),
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }


# ---- routes: the proxy/serve switch ---------------------------------------------------------


def _regex(pattern: str) -> dict[str, Any]:
    return {"safe_regex": {"regex": pattern}}


def _direct(name: str, match: dict[str, Any], status: int, message: str,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A route Envoy answers itself: `message` becomes the JSON error (local_reply_config)."""
    route: dict[str, Any] = {"name": name, "match": match,
                             "direct_response": {"status": status, "body": {"inline_string": message}}}
    if headers:
        route["response_headers_to_add"] = [{"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                                            for k, v in headers.items()]
    return route


def _no_buffer() -> dict[str, Any]:
    """Streams (gRPC) pass through unbuffered."""
    return {"envoy.filters.http.buffer": {"@type": BUFFER_PER_ROUTE_TYPE, "disabled": True}}


def _forward(name: str, match: dict[str, Any], cluster: str, timeout: float, *, buffered: bool = True,
             idle_timeout: float | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {"cluster": cluster, "timeout": f"{timeout:g}s"}
    if idle_timeout is not None:
        action["idle_timeout"] = f"{idle_timeout:g}s"
    route: dict[str, Any] = {"name": name, "match": match, "route": action}
    if not buffered:
        route["typed_per_filter_config"] = _no_buffer()
    return route


def _grpc_match(path: str, *, prefix: bool = False) -> dict[str, Any]:
    return {"prefix" if prefix else "path": path,
            "headers": [{"name": "content-type", "string_match": {"prefix": "application/grpc"}}]}


def grpc_routes(fn: FunctionRoute, mode: Mode) -> list[dict[str, Any]]:
    """Health and server calls to Python; the model's calls to the serving cluster; the rest UNIMPLEMENTED."""
    if fn.activator_grpc_port is None:
        return []
    cluster = REPLICAS_GRPC if mode == "serve" else ACTIVATOR_GRPC
    limit = fn.timeout_seconds if mode == "serve" else fn.timeout_seconds + fn.startup_timeout
    routes = [_forward("grpc-health", _grpc_match(GRPC_HEALTH), ACTIVATOR_GRPC, 10, buffered=False)]
    routes += [_forward(f"grpc-{m}", _grpc_match(GRPC_SERVICE + m), ACTIVATOR_GRPC, 10, buffered=False)
               for m in GRPC_SERVER_METHODS]
    # A unary call is one message: buffered, so bounded by max_body_bytes as an HTTP body is.
    routes += [_forward(f"grpc-{m}", _grpc_match(GRPC_SERVICE + m), cluster, limit) for m in GRPC_MODEL_METHODS]
    # A stream has no overall limit (nor a size limit here); one idle for timeoutSeconds (no message either way) ends.
    routes.append(_forward("grpc-stream", _grpc_match(GRPC_SERVICE + GRPC_STREAM_METHOD), cluster, 0,
                           buffered=False, idle_timeout=fn.timeout_seconds if mode == "serve" else limit))
    # 404 becomes gRPC status UNIMPLEMENTED in Envoy's local reply to a gRPC request.
    routes.append(_direct("grpc-other", _grpc_match("/", prefix=True), 404,
                          "not exposed by aifn functions (the repository, shared-memory, trace and log APIs are not)"))
    return routes


def http_routes(fn: FunctionRoute, mode: Mode) -> list[dict[str, Any]]:
    """The gateway's HTTP surface: health/status/metrics to Python, the model's calls to the serving cluster."""
    model = re.escape(fn.model)
    cluster = REPLICAS if mode == "serve" else ACTIVATOR
    limit = fn.timeout_seconds if mode == "serve" else fn.timeout_seconds + fn.startup_timeout
    allowed = f"/v2/models/{model}{MODEL_TAIL}"
    get_or_post = [{"name": ":method", "string_match": {"safe_regex": {"regex": "GET|POST"}}}]
    routes = [_forward(f"python{p}", {"path": p}, ACTIVATOR, 10) for p in PYTHON_PATHS]
    routes += [_forward(f"python{p}", {"path": p}, ACTIVATOR, limit) for p in fn.python_paths]
    routes += [_forward(f"python-route-{i}", _regex(p), ACTIVATOR, limit) for i, p in enumerate(fn.python_patterns)]
    routes.append(_forward("python-aifn", {"prefix": "/aifn/"}, ACTIVATOR, 10))
    # Compressed bodies go to Python, which decompresses them within max_body_bytes (Triton would
    # take gzip and deflate unbounded, and answer anything else in text/plain).
    encoded = {**_regex(allowed), "headers": [*get_or_post, {"name": "content-encoding", "present_match": True}]}
    routes.append(_forward("encoded", encoded, ACTIVATOR, fn.timeout_seconds + fn.startup_timeout))
    infer = _forward("infer", {**_regex(f"/v2/models/{model}(/versions/[0-9]+)?/infer"), "headers": get_or_post},
                     cluster, limit)
    if mode == "serve":
        infer["route"]["retry_policy"] = PYTHON_SECOND_OPINION
    routes += [infer, _forward("model", {**_regex(allowed), "headers": get_or_post}, cluster, limit)]
    if mode == "serve":  # counted by Envoy (route stats, metrics.py); in proxy mode Python counts them
        for route in routes[-2:]:
            route["stat_prefix"] = route["name"]
    routes.append(_direct("model-method", _regex(allowed), 405, "a model's calls are GET or POST", {"Allow": "GET, POST"}))
    routes.append(_direct("model-other", _regex(f"/v2/models/{model}/.*"), 403,
                          "not exposed by aifn functions (a model serves metadata, ready, config, stats, infer and generate)"))
    routes.append(_direct("admin", _regex(f"/v2/({ADMIN_APIS})(/.*)?"), 403,
                          "Triton's repository, shared-memory, trace and logging APIs are not exposed by aifn functions"))
    # Python names the model asked for in its 404 (Envoy's replies cannot quote a part of the path).
    routes.append(_forward("unknown-model", _regex("/v2/models/[^/]+(/.*)?"), ACTIVATOR, 10))
    routes.append(_direct("not-found", {"prefix": "/"}, 404, f"Not Found (this gateway serves /v2/health/*, "
                          f"/v2/models/{fn.model}/..., /metrics, /aifn/status)"))
    return routes


def route_configuration(fn: FunctionRoute, mode: Mode) -> dict[str, Any]:
    """The RDS resource: `proxy` sends the model's calls to the activator, `serve` to the replicas."""
    return {"@type": ROUTE_TYPE, "name": ROUTES, "virtual_hosts": [
        {"name": LISTENER, "domains": ["*"], "routes": grpc_routes(fn, mode) + http_routes(fn, mode),
         "include_request_attempt_count": True}]}  # x-envoy-attempt-count: 2 marks a second opinion


# ---- clusters and endpoints -------------------------------------------------------------------


def _http2_options() -> dict[str, Any]:
    return {HTTP_OPTIONS_KEY: {"@type": HTTP_OPTIONS_TYPE, "explicit_http_config": {"http2_protocol_options": {}}}}


def _protocol_options(http2: bool, container_concurrency: int) -> dict[str, Any]:
    """A replica cluster's upstream protocol: HTTP/1.1 (Triton's HTTP port) or h2c with at most cc streams (gRPC)."""
    explicit: dict[str, Any] = {"http_protocol_options": {}}
    if http2:
        explicit = {"http2_protocol_options": {"max_concurrent_streams": container_concurrency}
                    if container_concurrency else {}}
    return {HTTP_OPTIONS_KEY: {"@type": HTTP_OPTIONS_TYPE, "explicit_http_config": explicit,
                               "common_http_protocol_options": {"idle_timeout": UPSTREAM_IDLE}}}


def _static_cluster(name: str, port: int, *, http2: bool = False) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "@type": CLUSTER_TYPE, "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _address("127.0.0.1", port)}}]}]},
        "circuit_breakers": {"thresholds": [{"max_connections": UNLIMITED, "max_pending_requests": UNLIMITED,
                                             "max_requests": UNLIMITED, "max_retries": 0}]},
    }
    if http2:
        cluster["typed_extension_protocol_options"] = _http2_options()
    return cluster


def _replica_cluster(fn: FunctionRoute, name: str, paths: XdsPaths, *, http2: bool) -> dict[str, Any]:
    """Least-request balancing over the replicas, at most containerConcurrency requests each, a bounded queue."""
    cc = fn.container_concurrency
    thresholds = {"max_connections": UNLIMITED, "max_pending_requests": fn.queue_limit,
                  "max_requests": UNLIMITED, "max_retries": UNLIMITED}
    cluster: dict[str, Any] = {
        "@type": CLUSTER_TYPE, "name": name, "type": "EDS", "connect_timeout": "2s",
        "lb_policy": "LEAST_REQUEST",
        "typed_extension_protocol_options": _protocol_options(http2, cc),
        "eds_cluster_config": {"service_name": name, "eds_config": paths.config_source(f"eds-{name}")},
        "circuit_breakers": {"thresholds": [thresholds]},
        # Never route to a draining replica, however few are left (Envoy's panic mode would).
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    }
    if cc > 0:
        # HTTP/1.1: one request per connection at a time, so cc connections = cc requests.
        # HTTP/2: one connection carrying at most cc streams.
        cluster["circuit_breakers"]["per_host_thresholds"] = [{"max_connections": 1 if http2 else cc}]
    return cluster


def clusters(fn: FunctionRoute, paths: XdsPaths) -> list[dict[str, Any]]:
    """The CDS resources: the activator (and its gRPC side) on loopback, the replicas from EDS."""
    result = [_static_cluster(ACTIVATOR, fn.activator_port), _replica_cluster(fn, REPLICAS, paths, http2=False)]
    if fn.activator_grpc_port is not None:
        result += [_static_cluster(ACTIVATOR_GRPC, fn.activator_grpc_port, http2=True),
                   _replica_cluster(fn, REPLICAS_GRPC, paths, http2=True)]
    return result


def _load_assignment(name: str, addresses: list[tuple[str, int, bool]],
                     second_opinion: tuple[str, int] | None = None) -> dict[str, Any]:
    def lb_endpoint(host: str, port: int, draining: bool) -> dict[str, Any]:
        endpoint: dict[str, Any] = {"endpoint": {"address": _address(host, port)}}
        if draining:
            endpoint["health_status"] = "DRAINING"
        return endpoint
    assignment: dict[str, Any] = {"@type": ENDPOINTS_TYPE, "cluster_name": name, "endpoints": [{"lb_endpoints": [
        lb_endpoint(*address) for address in addresses]}]}
    if second_opinion is not None:
        assignment["endpoints"].append({"priority": ACTIVATOR_PRIORITY, "lb_endpoints": [lb_endpoint(*second_opinion, False)]})
        # Priority 0 takes every request while one replica there is healthy, however many drain.
        assignment["policy"] = {"overprovisioning_factor": UNLIMITED}
    return assignment


def endpoints(fn: FunctionRoute, replicas: list[ReplicaAddress]) -> dict[str, dict[str, Any]]:
    """The EDS resources, by cluster name: the replicas' HTTP (and gRPC) addresses; draining ones take no new requests."""
    result = {REPLICAS: _load_assignment(REPLICAS, [(r.host, r.http_port, r.draining) for r in replicas],
                                         second_opinion=("127.0.0.1", fn.activator_port))}
    if fn.activator_grpc_port is not None:
        result[REPLICAS_GRPC] = _load_assignment(
            REPLICAS_GRPC, [(r.host, r.grpc_port, r.draining) for r in replicas if r.grpc_port])
    return result


def xds_files(fn: FunctionRoute, paths: XdsPaths, mode: Mode, replicas: list[ReplicaAddress],
              version: str) -> dict[str, dict[str, Any]]:
    """Every dynamic file (path -> content) for one state, in the order to write them for that mode."""
    eds = {f"eds-{name}": discovery_response(version, [assignment])
           for name, assignment in endpoints(fn, replicas).items()}
    cds_lds = {"cds": discovery_response(version, clusters(fn, paths)),
               "lds": discovery_response(version, listeners(fn, paths))}
    rds = {"rds": discovery_response(version, [route_configuration(fn, mode)])}
    # An EDS file must exist before the cluster naming it (Envoy rejects the CDS update otherwise).
    content = {**eds, **cds_lds, **rds} if mode == "serve" else {**rds, **eds, **cds_lds}
    return {paths.file(kind): document for kind, document in content.items()}


def static_bootstrap(fn: FunctionRoute, mode: Mode, replicas: list[ReplicaAddress], *,
                     admin_port: int = 0, max_connections: int = 4096) -> dict[str, Any]:
    """The same listener, routes and clusters inline (no files): for `envoy --mode validate` and benchmarks."""
    paths = XdsPaths("/nonexistent")
    lst = listener(fn, paths)
    hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["rds"]
    hcm["route_config"] = {k: v for k, v in route_configuration(fn, mode).items() if k != "@type"}
    assignments = endpoints(fn, replicas)
    static_clusters = []
    for cluster in clusters(fn, paths):
        cluster = {k: v for k, v in cluster.items() if k != "@type"}
        if cluster["type"] == "EDS":
            del cluster["eds_cluster_config"]
            cluster["type"] = "STATIC"
            cluster["load_assignment"] = {k: v for k, v in assignments[cluster["name"]].items() if k != "@type"}
        static_clusters.append(cluster)
    return {
        "node": {"id": "aifn-run", "cluster": "aifn-run"},
        "admin": {"address": _address("127.0.0.1", admin_port)},
        "static_resources": {"listeners": [{k: v for k, v in lst.items() if k != "@type"}], "clusters": static_clusters},
        "overload_manager": overload_manager(max_connections),
    }
