"""Envoy configuration for the gateway: bootstrap, route tables and clusters (pure, no I/O).

Shape (as Kourier's): two HTTP listeners, `external` (ExternalIP rules; the NodePort Service) and
`internal` (every rule; the cluster-local Service), each with its route table delivered by RDS,
and one cluster per Service port delivered by CDS. The xDS resources come from files the controller
replaces atomically (file-based xDS, `watched_directory`); Envoy reloads them on the move.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .kingress import CLUSTER_LOCAL, EXTERNAL, Backend, Ingress, Path, expanded_hosts

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

LISTENERS = {"external": 8080, "internal": 8081}  # route table name -> container port
TLS_PORT = 8443  # HTTPS for the external route table: one filter chain per certificate, chosen by SNI
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
TLS_CONTEXT_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
READY_PORT = 8090  # GET /ready answers 200 once Envoy serves (the pod's readiness probe)
ADMIN_PORT = 9901  # loopback only: the controller reads which xDS versions Envoy has applied
XDS_DIRS = {"cds": "cds", "lds": "lds", "external": "rds-external", "internal": "rds-internal"}
H2C_PORT_NAMES = ("h2c", "http2", "grpc")  # Knative's convention: an h2c port speaks HTTP/2 cleartext
H2C_APP_PROTOCOLS = ("kubernetes.io/h2c", "h2c", "grpc")


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    app_protocol: str = ""


@dataclass(frozen=True)
class ServiceInfo:
    """What the gateway needs of a Service: where to send traffic and which protocol it speaks.

    `endpoints`: Service port name -> the ready pod addresses (ip, target port) from its
    EndpointSlices. Envoy sends to pods directly, as Kourier does, not through the ClusterIP: a new
    Service's pods are reachable as soon as they are ready, before kube-proxy has programmed the
    ClusterIP, and Envoy balances requests rather than kube-proxy balancing connections.
    """

    namespace: str
    name: str
    cluster_ip: str  # "" or "None" when headless
    ports: tuple[ServicePort, ...]
    external_name: str = ""
    endpoints: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()

    def port(self, wanted: int | str) -> ServicePort | None:
        for port in self.ports:
            if port.port == wanted or port.name == wanted:
                return port
        return None


@dataclass
class GatewayConfig:
    """The xDS resources for one state of the cluster, and the problems found building them."""

    clusters: list[dict[str, Any]]
    routes: dict[str, dict[str, Any]]  # listener name -> RouteConfiguration
    problems: dict[str, list[str]] = field(default_factory=dict)  # ingress key -> what it lost


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def ready_endpoints(slices: Iterable[dict[str, Any]]) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
    """From a Service's EndpointSlices: port name -> sorted ready (ip, port) pairs."""
    by_port: dict[str, set[tuple[str, int]]] = {}
    for endpoint_slice in slices:
        ports = [(p.get("name") or "", p.get("port")) for p in endpoint_slice.get("ports") or [] if p.get("port")]
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                for name, port in ports:
                    by_port.setdefault(name, set()).add((address, int(port)))
    return tuple(sorted((name, tuple(sorted(pairs))) for name, pairs in by_port.items()))


def service_info(obj: dict[str, Any], slices: Iterable[dict[str, Any]] = ()) -> ServiceInfo:
    """A Service object (as the API returns it) and its EndpointSlices, reduced to what routing needs."""
    spec = obj.get("spec") or {}
    ports = tuple(ServicePort(p.get("name") or "", int(p["port"]), p.get("appProtocol") or "")
                  for p in spec.get("ports") or [] if p.get("port"))
    return ServiceInfo(obj["metadata"]["namespace"], obj["metadata"]["name"], spec.get("clusterIP") or "", ports,
                       spec.get("externalName") or "", ready_endpoints(slices))


def cluster_name(backend: Backend) -> str:
    return f"{backend.namespace}/{backend.service}:{backend.port}"


def _speaks_h2c(port: ServicePort) -> bool:
    return port.name in H2C_PORT_NAMES or port.app_protocol in H2C_APP_PROTOCOLS


def render_cluster(backend: Backend, service: ServiceInfo) -> dict[str, Any] | None:
    """The Envoy cluster of a backend, or None when the Service lacks that port."""
    port = service.port(backend.port)
    if port is None:
        return None
    if service.external_name:
        addresses, kind = [(service.external_name, port.port)], "STRICT_DNS"
    else:
        addresses, kind = list(dict(service.endpoints).get(port.name, ())), "STATIC"  # none ready: Envoy answers 503
    cluster: dict[str, Any] = {
        "@type": CLUSTER_TYPE,
        "name": cluster_name(backend),
        "type": kind,
        "connect_timeout": "5s",
        "lb_policy": "LEAST_REQUEST",
        "load_assignment": {
            "cluster_name": cluster_name(backend),
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": address, "port_value": target}}}} for address, target in addresses]}],
        },
    }
    if kind == "STRICT_DNS":
        cluster["dns_refresh_rate"] = "2s"
    if _speaks_h2c(port):
        cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS_TYPE, "explicit_http_config": {"http2_protocol_options": {}}}}
    return cluster


def _headers_to_set(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"header": {"key": name, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for name, value in pairs]


def render_route(ingress: Ingress, index: int, path: Path) -> dict[str, Any]:
    """One Envoy route: prefix and exact-header match, headers set, weighted backends, no timeout."""
    splits = [s for s in path.splits if s.percent > 0] or list(path.splits)
    action: dict[str, Any] = {"timeout": "0s"}  # Knative's own timeouts live in queue-proxy and the activator
    if len(splits) == 1:
        action["cluster"] = cluster_name(splits[0])
        split_headers = _headers_to_set(splits[0].append_headers)
    else:
        action["weighted_clusters"] = {"clusters": [
            {"name": cluster_name(s), "weight": max(s.percent, 0),
             **({"request_headers_to_add": _headers_to_set(s.append_headers)} if s.append_headers else {})}
            for s in splits]}
        split_headers = []
    if path.rewrite_host:
        action["host_rewrite_literal"] = path.rewrite_host
    route: dict[str, Any] = {
        "name": f"{ingress.key}/{index}",
        "match": {"prefix": path.prefix,
                  "headers": [{"name": name, "string_match": {"exact": value}} for name, value in path.headers]},
        "route": action,
    }
    headers = _headers_to_set(path.append_headers) + split_headers
    if headers:
        route["request_headers_to_add"] = headers
    return route


def _virtual_hosts(ingresses: list[Ingress], listener: str, problems: dict[str, list[str]]) -> list[dict[str, Any]]:
    visible = (EXTERNAL,) if listener == "external" else (EXTERNAL, CLUSTER_LOCAL)
    claimed: dict[str, str] = {}
    hosts: list[dict[str, Any]] = []
    for ingress in ingresses:  # oldest first: a host two KIngresses claim stays with the first
        for r, rule in enumerate(ingress.rules):
            if rule.visibility not in visible:
                continue
            domains = []
            for host in expanded_hosts(rule.hosts):
                owner = claimed.setdefault(host, ingress.key)
                if owner != ingress.key:
                    problems.setdefault(ingress.key, []).append(f"host {host} is served for {owner}")
                    continue
                domains += [host, f"{host}:*"]
            if not domains:
                continue
            hosts.append({
                "name": f"{ingress.key}/{r}",
                "domains": domains,
                "routes": [render_route(ingress, i, path) for i, path in enumerate(rule.paths)],
            })
    return hosts


def render(ingresses: list[Ingress], services: dict[tuple[str, str], ServiceInfo]) -> GatewayConfig:
    """The gateway's clusters and route tables for these KIngresses (given oldest first)."""
    problems: dict[str, list[str]] = {}
    clusters: dict[str, dict[str, Any] | None] = {}
    for ingress in ingresses:
        for rule in ingress.rules:
            for path in rule.paths:
                for backend in path.splits:
                    name = cluster_name(backend)
                    if name not in clusters:
                        service = services.get((backend.namespace, backend.service))
                        clusters[name] = render_cluster(backend, service) if service else None
                    if clusters[name] is None:
                        service = services.get((backend.namespace, backend.service))
                        what = "Service" if service is None else "port of Service"
                        problem = f"no {what} {backend.namespace}/{backend.service}:{backend.port} (yet)"
                        if problem not in problems.get(ingress.key, []):
                            problems.setdefault(ingress.key, []).append(problem)
    routes = {listener: {"@type": ROUTE_TYPE, "name": listener,
                         "virtual_hosts": _virtual_hosts(ingresses, listener, problems)}
              for listener in LISTENERS}
    rendered = [cluster for cluster in clusters.values() if cluster is not None]
    return GatewayConfig(sorted(rendered, key=lambda c: c["name"]), routes, problems)


@dataclass(frozen=True)
class Certificate:
    """A certificate chain and key (PEM) for some hosts, from a KIngress's spec.tls Secret."""

    name: str  # e.g. ns/ingress/secret
    hosts: tuple[str, ...]
    chain: str
    key: str


def _hcm(name: str, xds_root: str, stat_prefix: str) -> dict[str, Any]:
    directory = f"{xds_root}/{XDS_DIRS[name]}"
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",  # HTTP/1.1 and HTTP/2 with prior knowledge (gRPC) on one port
        "use_remote_address": True,
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "rds": {"route_config_name": name, "config_source": {"resource_api_version": "V3", "path_config_source": {
            "path": f"{directory}/routes.json", "watched_directory": {"path": directory}}}},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}],
    }}


def tls_listeners(certificates: list[Certificate], xds_root: str) -> list[dict[str, Any]]:
    """The HTTPS listener (none without certificates): a filter chain per certificate, matched by SNI,
    serving the external route table. A host only the first certificate that names it gets."""
    chains, taken = [], set()
    for certificate in certificates:
        hosts = [h for h in certificate.hosts if h not in taken]
        if not hosts:
            continue
        taken.update(hosts)
        chains.append({
            "name": certificate.name,
            "filter_chain_match": {"server_names": hosts},
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": TLS_CONTEXT_TYPE,
                "common_tls_context": {
                    "alpn_protocols": ["h2", "http/1.1"],
                    "tls_certificates": [{"certificate_chain": {"inline_string": certificate.chain},
                                          "private_key": {"inline_string": certificate.key}}]}}},
            "filters": [_hcm("external", xds_root, "external-tls")],
        })
    if not chains:
        return []
    return [{"@type": LISTENER_TYPE, "name": "external-tls",
             "address": {"socket_address": {"address": "0.0.0.0", "port_value": TLS_PORT}},
             "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                 "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
             "filter_chains": chains}]


def discovery_response(version: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The file content of file-based xDS: a DiscoveryResponse with the resources inline."""
    return {"version_info": version, "resources": resources}


def _http_listener(name: str, port: int, xds_root: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [{"filters": [_hcm(name, xds_root, name)]}],
    }


def bootstrap(xds_root: str, node_id: str = "aifn-gateway") -> dict[str, Any]:
    """Envoy's bootstrap: admin on loopback, the two HTTP listeners and /ready; the HTTPS listener (LDS),
    clusters (CDS) and route tables (RDS) from files."""
    cds_dir = f"{xds_root}/{XDS_DIRS['cds']}"
    lds_dir = f"{xds_root}/{XDS_DIRS['lds']}"
    ready = {
        "name": "ready",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": READY_PORT}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": HCM_TYPE,
            "stat_prefix": "ready",
            "route_config": {"virtual_hosts": [{"name": "ready", "domains": ["*"], "routes": [
                {"match": {"path": "/ready"}, "direct_response": {"status": 200, "body": {"inline_string": "ready\n"}}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}],
        }}]}],
    }
    return {
        "node": {"id": node_id, "cluster": node_id},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN_PORT}}},
        "dynamic_resources": {
            "cds_config": {"resource_api_version": "V3", "path_config_source": {
                "path": f"{cds_dir}/clusters.json", "watched_directory": {"path": cds_dir}}},
            "lds_config": {"resource_api_version": "V3", "path_config_source": {
                "path": f"{lds_dir}/listeners.json", "watched_directory": {"path": lds_dir}}},
        },
        "static_resources": {"listeners": [_http_listener(name, port, xds_root) for name, port in LISTENERS.items()]
                             + [ready]},
    }


def applied_versions(stats_text: str) -> dict[str, str]:
    """From Envoy's admin /stats: the xDS version each subscription applied ('cds', 'lds', 'external', 'internal')."""
    versions: dict[str, str] = {}
    for line in stats_text.splitlines():
        key, _, value = line.partition(": ")
        value = value.strip().strip('"')
        if key == "cluster_manager.cds.version_text":
            versions["cds"] = value
        if key == "listener_manager.lds.version_text":
            versions["lds"] = value
        for listener in LISTENERS:
            if key == f"http.{listener}.rds.{listener}.version_text":
                versions[listener] = value
    return versions
