"""A KIngress (networking.internal.knative.dev/v1alpha1 Ingress), parsed into what the gateway serves.

Pure: no I/O. The hash and the probe rules follow knative.dev/networking's `pkg/ingress`
(`ComputeHash`, `InsertProbe`), so Knative's conformance suite sees the hash it computes itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

GROUP = "networking.internal.knative.dev"
VERSION = "v1alpha1"
PLURAL = "ingresses"
INGRESS_CLASS = "aifn.ingress.networking.knative.dev"
CLASS_ANNOTATION = "networking.knative.dev/ingress.class"

EXTERNAL = "ExternalIP"
CLUSTER_LOCAL = "ClusterLocal"
VISIBILITIES = (EXTERNAL, CLUSTER_LOCAL)

HASH_HEADER = "K-Network-Hash"
HASH_OVERRIDE = "override"  # the value Knative's prober sends; the gateway answers with the real hash
CLUSTER_DOMAIN = "cluster.local"


class IngressError(ValueError):
    """A KIngress the gateway cannot serve; the message names the field."""


@dataclass(frozen=True)
class Backend:
    """One split of a path: a Service port and its share of the traffic."""

    namespace: str
    service: str
    port: int | str  # a port number or a port name of the Service
    percent: int
    append_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Path:
    """One path of a rule: match (prefix, exact headers), headers to set, the backends."""

    prefix: str
    headers: tuple[tuple[str, str], ...]
    splits: tuple[Backend, ...]
    append_headers: tuple[tuple[str, str], ...] = ()
    rewrite_host: str = ""


@dataclass(frozen=True)
class Rule:
    hosts: tuple[str, ...]
    visibility: str
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class TLS:
    """Hosts served over HTTPS with the certificate of a kubernetes.io/tls Secret."""

    hosts: tuple[str, ...]
    secret_namespace: str
    secret_name: str


@dataclass(frozen=True)
class Ingress:
    namespace: str
    name: str
    generation: int
    rules: tuple[Rule, ...]
    hash: str  # hex sha256 of Go's JSON of the spec + namespace + name (ComputeHash)
    tls: tuple[TLS, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def is_ours(obj: dict[str, Any], ingress_class: str = INGRESS_CLASS) -> bool:
    """Whether the KIngress names this gateway's class (Knative sets the annotation from config-network)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(CLASS_ANNOTATION) == ingress_class


# Go's encoding/json of IngressSpec ---------------------------------------------------------------


def _go_string(value: str) -> str:
    """A JSON string as Go writes it: HTML-safe escapes for <, > and &, and for U+2028/U+2029."""
    text = json.dumps(value, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _go_map(values: dict[str, Any], encode) -> str:
    return "{" + ",".join(f"{_go_string(k)}:{encode(values[k])}" for k in sorted(values)) + "}"


def _go_object(fields: list[tuple[str, str | None]]) -> str:
    """Fields in struct order; None means omitted (omitempty)."""
    return "{" + ",".join(f'"{name}":{value}' for name, value in fields if value is not None) + "}"


def _go_list(items: list[Any] | None, encode, omitempty: bool) -> str | None:
    if not items:
        return None if omitempty else ("null" if items is None else "[]")
    return "[" + ",".join(encode(item) for item in items) + "]"


def _go_int_or_string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise IngressError(f"servicePort must be an integer or a port name, not {value!r}")
    return str(value) if isinstance(value, int) else _go_string(value)


def _go_split(split: dict[str, Any]) -> str:
    return _go_object([
        ("serviceNamespace", _go_string(split.get("serviceNamespace") or "")),
        ("serviceName", _go_string(split.get("serviceName") or "")),
        ("servicePort", _go_int_or_string(split.get("servicePort", 0))),
        ("percent", str(split["percent"]) if split.get("percent") else None),
        ("appendHeaders", _go_map(split["appendHeaders"], _go_string) if split.get("appendHeaders") else None),
    ])


def _go_path(path: dict[str, Any]) -> str:
    headers = path.get("headers") or {}
    return _go_object([
        ("path", _go_string(path["path"]) if path.get("path") else None),
        ("rewriteHost", _go_string(path["rewriteHost"]) if path.get("rewriteHost") else None),
        ("headers", _go_map(headers, lambda m: _go_object([("exact", _go_string((m or {}).get("exact") or ""))]))
         if headers else None),
        ("splits", _go_list(path.get("splits"), _go_split, omitempty=False)),
        ("appendHeaders", _go_map(path["appendHeaders"], _go_string) if path.get("appendHeaders") else None),
    ])


def _go_rule(rule: dict[str, Any]) -> str:
    http = rule.get("http")
    return _go_object([
        ("hosts", _go_list(rule.get("hosts"), _go_string, omitempty=True)),
        ("visibility", _go_string(rule["visibility"]) if rule.get("visibility") else None),
        ("http", _go_object([("paths", _go_list(http.get("paths"), _go_path, omitempty=False))])
         if http is not None else None),
    ])


def _go_tls(tls: dict[str, Any]) -> str:
    return _go_object([
        ("hosts", _go_list(tls.get("hosts"), _go_string, omitempty=True)),
        ("secretName", _go_string(tls["secretName"]) if tls.get("secretName") else None),
        ("secretNamespace", _go_string(tls["secretNamespace"]) if tls.get("secretNamespace") else None),
    ])


def go_json_spec(spec: dict[str, Any]) -> bytes:
    """`json.Marshal(ingress.Spec)` of knative.dev/networking v1alpha1, byte for byte."""
    text = _go_object([
        ("tls", _go_list(spec.get("tls"), _go_tls, omitempty=True)),
        ("rules", _go_list(spec.get("rules"), _go_rule, omitempty=True)),
        ("httpOption", _go_string(spec["httpOption"]) if spec.get("httpOption") else None),
    ])
    return text.encode()


def compute_hash(obj: dict[str, Any]) -> str:
    """ComputeHash: sha256 of the spec's Go JSON followed by the namespace and the name, in hex."""
    metadata = obj.get("metadata") or {}
    data = go_json_spec(obj.get("spec") or {}) + (metadata.get("namespace") or "").encode() + \
        (metadata.get("name") or "").encode()
    return hashlib.sha256(data).hexdigest()


# Parsing ---------------------------------------------------------------------------------------


def _pairs(values: Any, where: str) -> tuple[tuple[str, str], ...]:
    if values is None:
        return ()
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise IngressError(f"{where} must map header names to strings")
    return tuple(sorted(values.items()))


def _backend(split: Any, where: str, only: bool) -> Backend:
    if not isinstance(split, dict):
        raise IngressError(f"{where} must be an object")
    namespace, service = split.get("serviceNamespace"), split.get("serviceName")
    if not namespace or not service:
        raise IngressError(f"{where}: serviceNamespace and serviceName are required")
    port = split.get("servicePort")
    if isinstance(port, bool) or not isinstance(port, (int, str)) or port in ("", 0):
        raise IngressError(f"{where}.servicePort must be a port number or name")
    percent = split.get("percent") or (100 if only else 0)
    if not isinstance(percent, int) or not 0 <= percent <= 100:
        raise IngressError(f"{where}.percent must be an integer in [0, 100]")
    return Backend(namespace, service, port, percent, _pairs(split.get("appendHeaders"), f"{where}.appendHeaders"))


def _path(path: Any, where: str) -> Path:
    if not isinstance(path, dict):
        raise IngressError(f"{where} must be an object")
    splits = path.get("splits") or []
    if not splits:
        raise IngressError(f"{where}.splits must name at least one backend")
    headers = path.get("headers") or {}
    if not isinstance(headers, dict):
        raise IngressError(f"{where}.headers must map header names to matches")
    matches = []
    for name, match in sorted(headers.items()):
        if not isinstance(match, dict) or not isinstance(match.get("exact"), str):
            raise IngressError(f"{where}.headers[{name}] must be {{exact: <string>}}")
        matches.append((name, match["exact"]))
    prefix = path.get("path") or "/"
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise IngressError(f"{where}.path must start with /")
    return Path(
        prefix=prefix,
        headers=tuple(matches),
        splits=tuple(_backend(s, f"{where}.splits[{i}]", len(splits) == 1) for i, s in enumerate(splits)),
        append_headers=_pairs(path.get("appendHeaders"), f"{where}.appendHeaders"),
        rewrite_host=path.get("rewriteHost") or "",
    )


def with_probe_paths(paths: tuple[Path, ...], ingress_hash: str) -> tuple[Path, ...]:
    """InsertProbe: before each path, a copy that also matches `K-Network-Hash: override` and sets it
    to the ingress's hash, so a probe that reaches the backend comes back carrying the hash."""
    probes = tuple(
        Path(p.prefix, tuple(sorted({**dict(p.headers), HASH_HEADER: HASH_OVERRIDE}.items())), p.splits,
             tuple(sorted({**dict(p.append_headers), HASH_HEADER: ingress_hash}.items())), p.rewrite_host)
        for p in paths)
    return probes + paths


def parse(obj: dict[str, Any]) -> Ingress:
    """The KIngress as the gateway serves it (probe paths included); IngressError names what is wrong."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    rules = []
    for i, rule in enumerate(spec.get("rules") or []):
        where = f"spec.rules[{i}]"
        if not isinstance(rule, dict):
            raise IngressError(f"{where} must be an object")
        visibility = rule.get("visibility") or EXTERNAL
        if visibility not in VISIBILITIES:
            raise IngressError(f"{where}.visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}")
        hosts = rule.get("hosts") or []
        if not hosts or not all(isinstance(h, str) and h for h in hosts):
            raise IngressError(f"{where}.hosts must list at least one host name")
        http = rule.get("http")
        if not isinstance(http, dict) or not http.get("paths"):
            raise IngressError(f"{where}.http.paths must list at least one path")
        paths = tuple(_path(p, f"{where}.http.paths[{j}]") for j, p in enumerate(http["paths"]))
        rules.append(Rule(tuple(hosts), visibility, paths))
    tls = []
    for i, entry in enumerate(spec.get("tls") or []):
        where = f"spec.tls[{i}]"
        if not isinstance(entry, dict) or not entry.get("secretName"):
            raise IngressError(f"{where}.secretName is required")
        hosts = entry.get("hosts") or []
        if not hosts or not all(isinstance(h, str) and h for h in hosts):
            raise IngressError(f"{where}.hosts must list at least one host name")
        tls.append(TLS(tuple(hosts), entry.get("secretNamespace") or metadata.get("namespace") or "",
                       entry["secretName"]))
    ingress_hash = compute_hash(obj)  # after validation: Go's encoding needs well-formed ports
    rules = [Rule(r.hosts, r.visibility, with_probe_paths(r.paths, ingress_hash)) for r in rules]
    return Ingress(
        namespace=metadata.get("namespace") or "",
        name=metadata.get("name") or "",
        generation=int(metadata.get("generation") or 0),
        rules=tuple(rules),
        hash=ingress_hash,
        tls=tuple(tls),
    )


def _valid_top_level_domain(host: str) -> bool:
    """isValidTopLevelDomain: the last label is at most 63 long and not all digits."""
    last = host.rsplit(".", 1)[-1]
    return len(last) <= 63 and any(c == "-" or c > "9" for c in last)


def expanded_hosts(hosts: tuple[str, ...], cluster_domain: str = CLUSTER_DOMAIN) -> tuple[str, ...]:
    """ExpandedHosts: a rule's hosts plus their short cluster names (name.ns.svc.cluster.local also
    answers as name.ns.svc and name.ns), keeping only names whose last label is a valid domain."""
    expanded: set[str] = set()
    for host in hosts:
        for suffix in ("", f".{cluster_domain}", f".svc.{cluster_domain}"):
            if suffix and not host.endswith(suffix):
                continue
            short = host[: len(host) - len(suffix)]
            if _valid_top_level_domain(short):
                expanded.add(short)
    return tuple(sorted(expanded))
