"""The gateway's control loop: KIngresses and Services in, Envoy's xDS files and KIngress status out.

Level-based: every change marks the state dirty; one loop renders the whole configuration from the
current objects (envoy.render), writes what changed (clusters first, then the route tables, then
clusters no route uses any more), waits until Envoy's admin reports those versions applied, and
only then reports the KIngresses of that state Ready. Nothing is Ready before Envoy serves it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from . import envoy, kingress, status

log = logging.getLogger("aifn.ingress")


@dataclass(frozen=True)
class Settings:
    xds_dir: Path
    public_service: str  # e.g. aifn-gateway.aifn-ingress.svc.cluster.local
    private_service: str
    ingress_class: str = kingress.INGRESS_CLASS
    admin_url: str = f"http://127.0.0.1:{envoy.ADMIN_PORT}"
    apply_timeout: float = 30.0
    health_port: int = 8091  # GET /ready: 200 once Envoy serves the first full configuration


def write_atomically(directory: Path, filename: str, document: dict[str, Any]) -> None:
    """Replace directory/filename by a rename, the move Envoy's watched_directory reacts to."""
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{filename}.tmp"
    temporary.write_text(json.dumps(document, sort_keys=True))
    os.replace(temporary, directory / filename)


def write_empty(xds_dir: Path) -> None:
    """The files Envoy reads at start: no clusters, empty route tables (version 'empty')."""
    write_atomically(xds_dir / envoy.XDS_DIRS["cds"], "clusters.json", envoy.discovery_response("empty", []))
    write_atomically(xds_dir / envoy.XDS_DIRS["lds"], "listeners.json", envoy.discovery_response("empty", []))
    for listener in envoy.LISTENERS:
        route = {"@type": envoy.ROUTE_TYPE, "name": listener, "virtual_hosts": []}
        write_atomically(xds_dir / envoy.XDS_DIRS[listener], "routes.json", envoy.discovery_response("empty", [route]))


def _version(resources: Any) -> str:
    return hashlib.sha256(json.dumps(resources, sort_keys=True).encode()).hexdigest()[:16]


class Store:
    """The objects the watches have seen, by (namespace, name); `changed` is set on every change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ingresses: dict[tuple[str, str], dict[str, Any]] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.endpointslices: dict[tuple[str, str], dict[str, Any]] = {}
        self.changed = threading.Event()

    def replace(self, kind: str, objects: list[dict[str, Any]]) -> None:
        with self.lock:
            setattr(self, kind, {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects})
        self.changed.set()

    def update(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        with self.lock:
            table = getattr(self, kind)
            if event == "DELETED":
                table.pop(key, None)
            else:
                table[key] = obj
        self.changed.set()

    def snapshot(self) -> tuple[list[dict[str, Any]], dict[tuple[str, str], envoy.ServiceInfo]]:
        """The KIngresses, and every Service with its ready endpoints."""
        with self.lock:
            ingresses, services, slices = list(self.ingresses.values()), dict(self.services), list(
                self.endpointslices.values())
        by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for endpoint_slice in slices:
            owner = ((endpoint_slice["metadata"].get("labels") or {}).get(envoy.SERVICE_NAME_LABEL))
            if owner:
                by_service.setdefault((endpoint_slice["metadata"]["namespace"], owner), []).append(endpoint_slice)
        return ingresses, {key: envoy.service_info(svc, by_service.get(key, ())) for key, svc in services.items()}


class Controller:
    """Watches, renders, writes, waits for Envoy, reports status. `run()` blocks."""

    def __init__(self, settings: Settings, api: client.ApiClient | None = None) -> None:
        self.settings = settings
        self.api = api or client.ApiClient()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)
        self.store = Store()
        self.written: dict[str, str] = {}  # xDS file -> version written
        self.live_clusters: list[dict[str, Any]] = []
        self.healthy = threading.Event()

    # Watches -----------------------------------------------------------------------------------

    def _list_ingresses(self, **kwargs: Any) -> Any:
        return self.custom.list_cluster_custom_object(kingress.GROUP, kingress.VERSION, kingress.PLURAL, **kwargs)

    def _watch(self, kind: str, list_call: Callable[..., Any], as_dict: bool) -> None:
        """List, then watch from that version; relist after an expired version or an error."""
        while True:
            try:
                listed = list_call()
                items = listed["items"] if as_dict else [self.api.sanitize_for_serialization(i) for i in listed.items]
                self.store.replace(kind, items)
                version = listed["metadata"]["resourceVersion"] if as_dict else listed.metadata.resource_version
                stream = watch.Watch().stream(list_call, resource_version=version, timeout_seconds=300)
                for event in stream:
                    obj = event["object"] if as_dict else self.api.sanitize_for_serialization(event["object"])
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.store.update(kind, event["type"], obj)
            except ApiException as failed:
                if failed.status != 410:
                    log.warning("watch of %s failed (%s); listing again", kind, failed.reason)
                    time.sleep(1)
            except Exception as failed:  # noqa: BLE001 - a watch must outlive any one failure
                log.warning("watch of %s failed: %s; listing again", kind, failed)
                time.sleep(1)

    def start_watches(self) -> None:
        watches = (("ingresses", self._list_ingresses, True),
                   ("services", self.core.list_service_for_all_namespaces, False),
                   ("endpointslices", self.discovery.list_endpoint_slice_for_all_namespaces, False))
        for kind, call, as_dict in watches:
            threading.Thread(target=self._watch, args=(kind, call, as_dict), name=f"watch-{kind}", daemon=True).start()

    # One pass --------------------------------------------------------------------------------------

    def _applied(self) -> dict[str, str]:
        with urllib.request.urlopen(f"{self.settings.admin_url}/stats?filter=version_text", timeout=5) as response:
            return envoy.applied_versions(response.read().decode())

    def _wait_applied(self, wanted: dict[str, str]) -> bool:
        deadline = time.monotonic() + self.settings.apply_timeout
        while time.monotonic() < deadline:
            try:
                applied = self._applied()
            except OSError:
                applied = {}
            if all(applied.get(name) == version for name, version in wanted.items()):
                return True
            time.sleep(0.05)
        log.error("Envoy did not apply %s within %.0fs (it has %s)", wanted, self.settings.apply_timeout,
                  self._applied_or_error())
        return False

    def _applied_or_error(self) -> Any:
        try:
            return self._applied()
        except OSError as failed:
            return f"no admin answer: {failed}"

    def _write_clusters(self, clusters: list[dict[str, Any]]) -> dict[str, str]:
        version = _version(clusters)
        if self.written.get("cds") != version:
            write_atomically(self.settings.xds_dir / envoy.XDS_DIRS["cds"], "clusters.json",
                             envoy.discovery_response(version, clusters))
            self.written["cds"] = version
        return {"cds": version}

    def sync(self) -> None:
        """Render the current state, make Envoy serve it, then report every KIngress of ours."""
        objects, infos = self.store.snapshot()
        ours = [o for o in objects if kingress.is_ours(o, self.settings.ingress_class)
                and not o["metadata"].get("deletionTimestamp")]
        ours.sort(key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["namespace"],
                                 o["metadata"]["name"]))
        parsed: list[kingress.Ingress] = []
        invalid: dict[str, str] = {}
        for obj in ours:
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            try:
                ingress = kingress.parse(obj)
            except kingress.IngressError as error:
                invalid[key] = str(error)
                continue
            parsed.append(ingress)
        certificates, missing = self._certificates(parsed)
        for key, problem in missing.items():
            invalid.setdefault(key, problem)
        config = envoy.render(parsed, infos)
        # Clusters first (old and new, so no route points at a missing one), then routes, then the
        # clusters nothing routes to any more.
        merged = {c["name"]: c for c in self.live_clusters} | {c["name"]: c for c in config.clusters}
        ok = self._wait_applied(self._write_clusters(sorted(merged.values(), key=lambda c: c["name"])))
        wanted = {}
        for listener, table in config.routes.items():
            version = _version(table)
            if self.written.get(listener) != version:
                write_atomically(self.settings.xds_dir / envoy.XDS_DIRS[listener], "routes.json",
                                 envoy.discovery_response(version, [table]))
                self.written[listener] = version
            wanted[listener] = version
        ok = self._wait_applied(wanted) and ok
        listeners = envoy.tls_listeners(certificates, str(self.settings.xds_dir))
        version = _version(listeners)
        if self.written.get("lds") != version:
            write_atomically(self.settings.xds_dir / envoy.XDS_DIRS["lds"], "listeners.json",
                             envoy.discovery_response(version, listeners))
            self.written["lds"] = version
        ok = self._wait_applied({"lds": version}) and ok
        if ok:
            ok = self._wait_applied(self._write_clusters(config.clusters))
            self.live_clusters = config.clusters
        if ok:
            self.healthy.set()
        else:
            self.store.changed.set()  # Envoy has not caught up: another pass
        for obj in ours:
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            problem = invalid.get(key) or "; ".join(config.problems.get(key, []))
            if not ok and not problem:
                continue  # not served yet: leave the status as it is, the next pass retries
            self._report(obj, problem or None)

    def _certificates(self, ingresses: list[kingress.Ingress]) -> tuple[list[envoy.Certificate], dict[str, str]]:
        """The certificates of every spec.tls entry (Secrets read now), and the KIngresses whose Secret is unusable."""
        certificates: list[envoy.Certificate] = []
        problems: dict[str, str] = {}
        for ingress in ingresses:
            for i, tls in enumerate(ingress.tls):
                where = f"spec.tls[{i}]: Secret {tls.secret_namespace}/{tls.secret_name}"
                try:
                    secret = self.core.read_namespaced_secret(tls.secret_name, tls.secret_namespace)
                except ApiException as failed:
                    problems[ingress.key] = f"{where}: {failed.reason}"
                    continue
                data = secret.data or {}
                if "tls.crt" not in data or "tls.key" not in data:
                    problems[ingress.key] = f"{where} has no tls.crt and tls.key"
                    continue
                certificates.append(envoy.Certificate(
                    f"{ingress.key}/{tls.secret_name}", tls.hosts,
                    base64.b64decode(data["tls.crt"]).decode(), base64.b64decode(data["tls.key"]).decode()))
        return certificates, problems

    def _report(self, obj: dict[str, Any], problem: str | None) -> None:
        metadata = obj["metadata"]
        current = obj.get("status") or {}
        desired = status.desired_status(current, int(metadata.get("generation") or 0),
                                        self.settings.public_service, self.settings.private_service, problem)
        if status.same_status(current, desired):
            return
        try:
            self.custom.patch_namespaced_custom_object_status(
                kingress.GROUP, kingress.VERSION, metadata["namespace"], kingress.PLURAL, metadata["name"],
                {"status": desired})
            log.info("KIngress %s/%s: %s", metadata["namespace"], metadata["name"], problem or "Ready")
        except ApiException as failed:
            if failed.status != 404:
                log.warning("status of KIngress %s/%s not written: %s", metadata["namespace"], metadata["name"],
                            failed.reason)
                self.store.changed.set()  # try again on the next pass

    def serve_health(self) -> ThreadingHTTPServer:
        """/ready answers 200 once Envoy serves a full configuration (the pod takes no traffic before)."""
        healthy = self.healthy

        class Health(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                ok = self.path == "/ready" and healthy.is_set()
                self.send_response(200 if ok else 503)
                self.end_headers()
                self.wfile.write(b"ready\n" if ok else b"not ready\n")

            def log_message(self, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("0.0.0.0", self.settings.health_port), Health)
        threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
        return server

    def run(self) -> None:
        self.serve_health()
        self.start_watches()
        while True:
            self.store.changed.wait(timeout=30)  # a periodic pass also retries what Envoy had not applied
            time.sleep(0.05)  # gather a burst of events into one pass
            self.store.changed.clear()
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - the loop outlives one bad pass; the next one retries
                log.exception("sync failed")
                time.sleep(1)
                self.store.changed.set()


def load_kubernetes_config() -> None:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
