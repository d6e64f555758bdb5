"""aifn-ingress's pure stages: KIngress parsing, Knative's hash and probe rules, Envoy rendering, status."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from aifunction_operator.ingress import envoy, kingress, status

CLASS = {kingress.CLASS_ANNOTATION: kingress.INGRESS_CLASS}


def ingress(name: str = "hello", namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    spec = spec or {"rules": [{"hosts": [f"{name}.{namespace}.example.com"], "visibility": "ExternalIP", "http": {
        "paths": [{"splits": [{"serviceNamespace": namespace, "serviceName": name, "servicePort": 80,
                               "percent": 100}]}]}}]}
    return {"metadata": {"namespace": namespace, "name": name, "generation": 3, "annotations": dict(CLASS),
                         "creationTimestamp": "2026-11-29T10:00:00Z"}, "spec": spec}


# Expected values from knative.dev/networking (the version serving v0.50.0 requires): a Go program
# decoding each case into v1alpha1.Ingress and printing ingress.ComputeHash and json.Marshal(ing.Spec).
GO_CASES = [
    ({"metadata": {"namespace": "serving-tests", "name": "a"}, "spec": {"rules": [{
        "hosts": ["a.example.com"], "visibility": "ExternalIP", "http": {"paths": [{"splits": [{
            "serviceNamespace": "serving-tests", "serviceName": "a", "servicePort": 80, "percent": 100}]}]}}]}},
     "776e1124535b87378254eb0e3a1e5d8bea4303d55d80bd0b8285dcc214f5b2ec",
     '{"rules":[{"hosts":["a.example.com"],"visibility":"ExternalIP","http":{"paths":[{"splits":[{"serviceNamespace"'
     ':"serving-tests","serviceName":"a","servicePort":80,"percent":100}]}]}}]}'),
    ({"metadata": {"namespace": "ns", "name": "b<&>"}, "spec": {
        "httpOption": "Enabled", "tls": [{"hosts": ["x"], "secretName": "s", "secretNamespace": "n"}],
        "rules": [{"hosts": ["b.ns", "b.ns.svc.cluster.local"], "visibility": "ClusterLocal", "http": {"paths": [{
            "path": "/foo", "rewriteHost": "r.\u00e9", "headers": {"Z": {"exact": "1"}, "A": {"exact": "<x>"}},
            "appendHeaders": {"K": "v", "A": "&"},
            "splits": [{"serviceNamespace": "ns", "serviceName": "b", "servicePort": "http", "percent": 30,
                        "appendHeaders": {"S": "\u2028"}},
                       {"serviceNamespace": "ns", "serviceName": "c", "servicePort": 8080, "percent": 70}]}]}},
                  {"hosts": ["q"], "http": {"paths": []}}]}},
     "576dc1f47b7772067b52c976d87c653c86542248656574f0eedf48913af662f6",
     '{"tls":[{"hosts":["x"],"secretName":"s","secretNamespace":"n"}],"rules":[{"hosts":["b.ns","b.ns.svc.cluster.'
     'local"],"visibility":"ClusterLocal","http":{"paths":[{"path":"/foo","rewriteHost":"r.\u00e9","headers":{"A":'
     '{"exact":"\\u003cx\\u003e"},"Z":{"exact":"1"}},"splits":[{"serviceNamespace":"ns","serviceName":"b",'
     '"servicePort":"http","percent":30,"appendHeaders":{"S":"\\u2028"}},{"serviceNamespace":"ns","serviceName":'
     '"c","servicePort":8080,"percent":70}],"appendHeaders":{"A":"\\u0026","K":"v"}}]}},{"hosts":["q"],"http":'
     '{"paths":[]}}],"httpOption":"Enabled"}'),
    ({"metadata": {"namespace": "ns", "name": "c"}, "spec": {}},
     "5feca6eb36f3528ba7da4d26a20119e51092f763e17f3111d2ebd4269a98c9f9", "{}"),
    ({"metadata": {"namespace": "ns", "name": "d"}, "spec": {"rules": [{"hosts": ["d"], "http": {"paths": [{
        "splits": [{"serviceNamespace": "ns", "serviceName": "d", "servicePort": 0}]}]}}]}},
     "01a87795818f92541b2fe872f75eba16eb14080c56ccaa1bee7a0665316e5483",
     '{"rules":[{"hosts":["d"],"http":{"paths":[{"splits":[{"serviceNamespace":"ns","serviceName":"d",'
     '"servicePort":0}]}]}}]}'),
]


@pytest.mark.parametrize(("obj", "go_hash", "go_json"), GO_CASES, ids=["basic", "every-field", "empty", "zero-port"])
def test_hash_and_json_match_knative_networking(obj: dict[str, Any], go_hash: str, go_json: str) -> None:
    assert kingress.go_json_spec(obj["spec"]).decode() == go_json
    assert kingress.compute_hash(obj) == go_hash


def test_the_hash_changes_with_the_spec_the_namespace_and_the_name() -> None:
    base = ingress()
    seen = {kingress.compute_hash(base)}
    for change in ("namespace", "name"):
        other = copy.deepcopy(base)
        other["metadata"][change] += "x"
        seen.add(kingress.compute_hash(other))
    other = copy.deepcopy(base)
    other["spec"]["rules"][0]["hosts"] = ["other.example.com"]
    seen.add(kingress.compute_hash(other))
    assert len(seen) == 4


def test_probe_paths_come_first_and_carry_the_hash() -> None:
    parsed = kingress.parse(ingress())
    paths = parsed.rules[0].paths
    assert len(paths) == 2
    probe, real = paths
    assert dict(probe.headers) == {"K-Network-Hash": "override"}
    assert dict(probe.append_headers) == {"K-Network-Hash": parsed.hash}
    assert real.headers == () and real.append_headers == ()
    assert probe.splits == real.splits and real.splits[0].percent == 100


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s["rules"][0].update(visibility="Public"), "spec.rules[0].visibility"),
    (lambda s: s["rules"][0].update(hosts=[]), "spec.rules[0].hosts"),
    (lambda s: s["rules"][0]["http"].update(paths=[]), "spec.rules[0].http.paths"),
    (lambda s: s["rules"][0]["http"]["paths"][0].update(splits=[]), "spec.rules[0].http.paths[0].splits"),
    (lambda s: s["rules"][0]["http"]["paths"][0].update(path="foo"), "spec.rules[0].http.paths[0].path"),
    (lambda s: s["rules"][0]["http"]["paths"][0]["splits"][0].update(servicePort=True),
     "spec.rules[0].http.paths[0].splits[0].servicePort"),
    (lambda s: s["rules"][0]["http"]["paths"][0]["splits"][0].pop("serviceName"),
     "spec.rules[0].http.paths[0].splits[0]: serviceNamespace and serviceName"),
    (lambda s: s["rules"][0]["http"]["paths"][0]["splits"][0].update(percent=101),
     "spec.rules[0].http.paths[0].splits[0].percent"),
    (lambda s: s["rules"][0]["http"]["paths"][0].update(headers={"X": {"prefix": "a"}}),
     "spec.rules[0].http.paths[0].headers[X]"),
    (lambda s: s["rules"][0]["http"]["paths"][0].update(appendHeaders={"X": 1}),
     "spec.rules[0].http.paths[0].appendHeaders"),
])
def test_bad_kingress_is_refused_naming_the_field(change: Any, message: str) -> None:
    obj = ingress()
    change(obj["spec"])
    with pytest.raises(kingress.IngressError, match=message.replace("[", r"\[").replace("]", r"\]")):
        kingress.parse(obj)


@pytest.mark.parametrize(("hosts", "expected"), [
    (("a.ns.example.com",), ("a.ns.example.com",)),
    (("a.ns.svc.cluster.local",), ("a.ns", "a.ns.svc", "a.ns.svc.cluster.local")),
    (("a.1234.svc.cluster.local",), ("a.1234.svc", "a.1234.svc.cluster.local")),  # "1234" is no domain
    (("x" * 64,), ()),
])
def test_expanded_hosts(hosts: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert kingress.expanded_hosts(hosts) == expected


def test_is_ours_reads_the_class_annotation() -> None:
    assert kingress.is_ours(ingress())
    other = ingress()
    other["metadata"]["annotations"][kingress.CLASS_ANNOTATION] = "kourier.ingress.networking.knative.dev"
    assert not kingress.is_ours(other)
    other["metadata"].pop("annotations")
    assert not kingress.is_ours(other)


def service(service_name: str, namespace: str = "ns", ip: str = "10.96.0.20", **port: Any) -> envoy.ServiceInfo:
    """A Service with one port (name `http` unless given) and its EndpointSlice: two pods, one not ready."""
    port_name = port.get("name", "http")
    endpoint_slice = {"metadata": {"name": f"{service_name}-abc", "namespace": namespace,
                                   "labels": {envoy.SERVICE_NAME_LABEL: service_name}},
                      "ports": [{"name": port_name, "port": 8080}],
                      "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": True}},
                                    {"addresses": ["10.244.1.9"], "conditions": {"ready": False}}]}
    return envoy.service_info({"metadata": {"name": service_name, "namespace": namespace},
                               "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, **port}]}},
                              [endpoint_slice])


def split_ingress(name: str, visibility: str, splits: list[tuple[str, int]], **path: Any) -> dict[str, Any]:
    return ingress(name, rules=[{"hosts": [f"{name}.ns.svc.cluster.local"], "visibility": visibility, "http": {
        "paths": [{"splits": [{"serviceNamespace": "ns", "serviceName": svc, "servicePort": 80, "percent": pct}
                              for svc, pct in splits], **path}]}}])


def test_render_weighted_splits_headers_and_listeners() -> None:
    obj = split_ingress("w", "ClusterLocal", [("blue", 30), ("green", 70)], appendHeaders={"X-Route": "w"},
                        headers={"X-Tag": {"exact": "t"}}, path="/api")
    config = envoy.render([kingress.parse(obj)], {("ns", "blue"): service("blue"), ("ns", "green"): service("green")})
    assert config.problems == {}
    assert [c["name"] for c in config.clusters] == ["ns/blue:80", "ns/green:80"]
    assert config.routes["external"]["virtual_hosts"] == [], "a ClusterLocal rule is not external"
    (host,) = config.routes["internal"]["virtual_hosts"]
    assert "w.ns:*" in host["domains"] and "w.ns.svc.cluster.local" in host["domains"]
    probe, real = host["routes"]
    assert real["match"] == {"prefix": "/api", "headers": [{"name": "X-Tag", "string_match": {"exact": "t"}}]}
    assert real["route"]["weighted_clusters"]["clusters"] == [{"name": "ns/blue:80", "weight": 30},
                                                              {"name": "ns/green:80", "weight": 70}]
    assert real["route"]["timeout"] == "0s"
    assert real["request_headers_to_add"] == [{"header": {"key": "X-Route", "value": "w"},
                                               "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    assert {"name": "K-Network-Hash", "string_match": {"exact": "override"}} in probe["match"]["headers"]


def test_h2c_ports_get_http2_upstreams_and_missing_services_are_reported() -> None:
    obj = split_ingress("g", "ExternalIP", [("grpc", 100)])
    config = envoy.render([kingress.parse(obj)], {("ns", "grpc"): service("grpc", name="h2c")})
    (cluster,) = config.clusters
    assert "http2_protocol_options" in json.dumps(cluster["typed_extension_protocol_options"])
    assert [e["endpoint"]["address"] for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]] == [
        {"socket_address": {"address": "10.244.0.7", "port_value": 8080}}], "the ready pod, at its target port"
    plain = envoy.render([kingress.parse(obj)], {("ns", "grpc"): service("grpc")}).clusters[0]
    assert "typed_extension_protocol_options" not in plain
    missing = envoy.render([kingress.parse(obj)], {})
    assert missing.clusters == [] and missing.problems == {"ns/g": ["no Service ns/grpc:80 (yet)"]}


def test_ready_endpoints_by_port_name() -> None:
    slices = [{"ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
               "endpoints": [{"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                             {"addresses": ["10.0.0.3"], "conditions": {"ready": False}}]},
              {"ports": [{"name": "http", "port": 8080}], "endpoints": [{"addresses": ["10.0.1.1"]}]}]
    assert envoy.ready_endpoints(slices) == (
        ("http", (("10.0.0.1", 8080), ("10.0.0.2", 8080), ("10.0.1.1", 8080))),
        ("metrics", (("10.0.0.1", 9090), ("10.0.0.2", 9090))))
    assert envoy.ready_endpoints([]) == ()


def test_a_host_claimed_twice_stays_with_the_older_kingress() -> None:
    first = kingress.parse(split_ingress("a", "ExternalIP", [("s", 100)]))
    second_obj = split_ingress("b", "ExternalIP", [("s", 100)])
    second_obj["spec"]["rules"][0]["hosts"] = ["a.ns.svc.cluster.local"]
    config = envoy.render([first, kingress.parse(second_obj)], {("ns", "s"): service("s")})
    assert [h["name"] for h in config.routes["external"]["virtual_hosts"]] == ["ns/a/0"]
    assert "host a.ns is served for ns/a" in config.problems["ns/b"]


def test_bootstrap_and_applied_versions() -> None:
    boot = envoy.bootstrap("/xds")
    assert boot["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    ports = {lst["name"]: lst["address"]["socket_address"]["port_value"] for lst in boot["static_resources"]["listeners"]}
    assert ports == {"external": 8080, "internal": 8081, "ready": 8090}
    stats = ('cluster_manager.cds.version_text: "abc"\nhttp.external.rds.external.version_text: "def"\n'
             'http.internal.rds.internal.version_text: ""\nother: 1\n')
    assert envoy.applied_versions(stats) == {"cds": "abc", "external": "def", "internal": ""}


def test_status_ready_and_failed() -> None:
    ready = status.desired_status(None, 3, "pub.svc", "priv.svc", None)
    assert ready["observedGeneration"] == 3
    assert {c["type"]: c["status"] for c in ready["conditions"]} == {
        "LoadBalancerReady": "True", "NetworkConfigured": "True", "Ready": "True"}
    assert ready["privateLoadBalancer"] == {"ingress": [{"domainInternal": "priv.svc"}]}
    assert status.same_status(ready, status.desired_status(ready, 3, "pub.svc", "priv.svc", None))
    failed = status.desired_status(ready, 4, "pub.svc", "priv.svc", "no Service ns/x:80 (yet)")
    assert not status.same_status(ready, failed)
    (condition,) = [c for c in failed["conditions"] if c["type"] == "Ready"]
    assert condition["status"] == "False" and condition["message"] == "no Service ns/x:80 (yet)"


def test_tls_entries_are_parsed_and_become_one_https_listener_chosen_by_sni() -> None:
    obj = ingress()
    obj["spec"]["tls"] = [{"hosts": ["hello.ns.example.com"], "secretName": "cert", "secretNamespace": "certs"}]
    (tls,) = kingress.parse(obj).tls
    assert tls == kingress.TLS(("hello.ns.example.com",), "certs", "cert")
    certificates = [envoy.Certificate("ns/a/cert", ("a.example.com", "b.example.com"), "CHAIN-A", "KEY-A"),
                    envoy.Certificate("ns/b/cert", ("b.example.com",), "CHAIN-B", "KEY-B"),
                    envoy.Certificate("ns/c/cert", ("c.example.com",), "CHAIN-C", "KEY-C")]
    (listener,) = envoy.tls_listeners(certificates, "/xds")
    assert listener["address"]["socket_address"]["port_value"] == envoy.TLS_PORT
    chains = listener["filter_chains"]
    assert [c["filter_chain_match"]["server_names"] for c in chains] == [["a.example.com", "b.example.com"],
                                                                         ["c.example.com"]], "b stays with a"
    context = chains[0]["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["tls_certificates"] == [{"certificate_chain": {"inline_string": "CHAIN-A"},
                                            "private_key": {"inline_string": "KEY-A"}}]
    assert chains[0]["filters"][0]["typed_config"]["rds"]["route_config_name"] == "external"
    assert envoy.tls_listeners([], "/xds") == []


def test_a_tls_entry_without_a_secret_is_refused() -> None:
    obj = ingress()
    obj["spec"]["tls"] = [{"hosts": ["hello.ns.example.com"]}]
    with pytest.raises(kingress.IngressError, match=r"spec.tls\[0\].secretName"):
        kingress.parse(obj)
