"""The operator's API client: every read, write and watch its code makes goes through `KubeClient`.

Reconcile (observing the live Service and children, applying and pruning, writing status and
Events), children, the process state (state.py) and peering all call it. It is not all of the
operator's Kubernetes I/O: kopf makes its own calls (the watches that start the handlers, its
bookkeeping annotations and finalizer on AIFunctions, its peering), and aifn-ingress
(ingress/controller.py) has a client of its own.

Server-side apply with field manager `aifn-operator` (forced: the operator owns every field it
renders), get, find, delete, status merge-patches and core Events, generic over the few kinds the
operator touches. Writes to and deletes of existing objects can name the object's uid as a
precondition, so that an object replaced by someone else in between is refused by the server.
Errors come back as `ApiError`, which says whether a retry can help.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config, watch

from ..constants import API_VERSION, FIELD_MANAGER, KIND, KNATIVE_SERVING_API, PLURAL
from ..render.manifest import Manifest


APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


AIFUNCTIONS = Resource(API_VERSION, PLURAL)
KNATIVE_SERVICES = Resource(KNATIVE_SERVING_API, "services")
REVISIONS = Resource(KNATIVE_SERVING_API, "revisions")
CONFIGMAPS = Resource("v1", "configmaps")
PODS = Resource("v1", "pods")
NODES = Resource("v1", "nodes", namespaced=False)
EVENTS = Resource("v1", "events")
CLUSTER_PEERINGS = Resource("kopf.dev/v1", "clusterkopfpeerings", namespaced=False)
NAMESPACED_PEERINGS = Resource("kopf.dev/v1", "kopfpeerings")
PING_SOURCES = Resource("sources.knative.dev/v1", "pingsources")
EVENTING_TRIGGERS = Resource("eventing.knative.dev/v1", "triggers")

KINDS = {
    (KNATIVE_SERVING_API, "Service"): KNATIVE_SERVICES,
    (KNATIVE_SERVING_API, "Revision"): REVISIONS,
    (API_VERSION, KIND): AIFUNCTIONS,
    ("v1", "ConfigMap"): CONFIGMAPS,
    ("sources.knative.dev/v1", "PingSource"): PING_SOURCES,
    ("eventing.knative.dev/v1", "Trigger"): EVENTING_TRIGGERS,
    ("v1", "Node"): NODES,
}


class ApiError(Exception):
    """A failed API request: HTTP status (0 for no response) and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message

    @property
    def transient(self) -> bool:
        """Whether retrying later can succeed (throttling, conflicts, server or network trouble)."""
        return self.status == 0 or self.status in TRANSIENT_STATUS


def resource_of(obj: Mapping[str, Any]) -> Resource:
    """The API resource for an object's apiVersion and kind."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in KINDS:
        raise ValueError(f"the operator does not manage {key[1]} {key[0]}")
    return KINDS[key]  # type: ignore[index]


def load_api_client(pool_size: int = 32) -> client.ApiClient:
    """An API client from the in-cluster service account when present, else the current kubeconfig."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class KubeClient:
    """Thread-safe, synchronous access to the API for the operator's few verbs."""

    def __init__(self, api: client.ApiClient, timeout: float = 30.0) -> None:
        self.api = api
        self.timeout = timeout

    def request(self, method: str, path: str, *, body: Any = None, query: Mapping[str, str] | None = None, content_type: str = "application/json") -> Manifest:
        """One request; the decoded JSON answer or ApiError."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, payload, _ = self.api.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self.api.call_api(method, url, headers, payload, _request_timeout=self.timeout)
            response.read()
        except client.ApiException as exc:
            raise ApiError(exc.status or 0, _message(exc.body) or str(exc.reason)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, f"cannot reach the API server: {exc}") from None
        data = response.data or b"{}"
        if not 200 <= response.status < 300:
            raise ApiError(response.status, _message(data) or str(response.reason))
        return json.loads(data)

    def apply(self, obj: Manifest, *, force: bool = True, uid: str | None = None) -> Manifest:
        """Server-side apply `obj` as `aifn-operator`; returns the live object (status included).

        With `uid`, the apply only changes the object of that uid: the server refuses it when the
        name now holds another object (422, `metadata.uid` is immutable) or none (409, uid
        mismatch: a retry looks again).
        """
        meta = obj["metadata"]
        path = resource_of(obj).path(meta.get("namespace"), meta["name"])
        query = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        body = {**obj, "metadata": {**meta, "uid": uid}} if uid else obj
        return self.request("PATCH", path, body=body, query=query, content_type=APPLY_PATCH)

    def get(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", resource.path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, resource: Resource, namespace: str | None, *, label_selector: str | None = None) -> list[Manifest]:
        """Every object of a kind (in a namespace), optionally selected by labels."""
        query = {"labelSelector": label_selector} if label_selector else None
        return list(self.request("GET", resource.path(namespace), query=query).get("items") or [])

    def find(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        """The object of that name, or None; a `list` by field selector (the operator may list
        ConfigMaps but not `get` them), with apiVersion and kind filled in."""
        query = {"fieldSelector": f"metadata.name={name}"}
        listing = self.request("GET", resource.path(namespace), query=query)
        items = listing.get("items") or []
        kind = str(listing.get("kind", "")).removesuffix("List")
        return {"apiVersion": resource.api_version, "kind": kind, **items[0]} if items else None

    def serves(self, api_version: str) -> bool:
        """Whether the API server serves a group/version (False: its CRDs are not installed)."""
        try:
            self.request("GET", "/api/v1" if api_version == "v1" else f"/apis/{api_version}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create(self, resource: Resource, namespace: str | None, obj: Manifest) -> Manifest:
        """Create `obj`."""
        return self.request("POST", resource.path(namespace), body=obj)

    def delete(self, resource: Resource, namespace: str | None, name: str, *, uid: str | None = None) -> bool:
        """Delete an object (with `uid`: only that object); False when it was already gone or replaced."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}} if uid else None
        try:
            self.request("DELETE", resource.path(namespace, name), body=body)
        except ApiError as exc:
            if exc.status == 404 or (uid and exc.status == 409 and "precondition" in exc.message.lower()):
                return False
            raise
        return True

    def merge_patch(self, obj: Mapping[str, Any], patch: Mapping[str, Any]) -> Manifest:
        """Merge-patch an object of a kind the operator manages; `metadata.uid` in the patch makes it a precondition."""
        meta = obj["metadata"]
        path = resource_of(obj).path(meta.get("namespace"), meta["name"])
        return self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)

    def patch_status(self, resource: Resource, namespace: str, name: str, status: Mapping[str, Any]) -> Manifest:
        """Merge-patch the status subresource (keys set to None are removed)."""
        path = resource.path(namespace, name, "status")
        return self.request("PATCH", path, body={"status": dict(status)}, content_type=MERGE_PATCH)

    def post_event(self, owner: Mapping[str, Any], *, type_: str, reason: str, message: str) -> Manifest:
        """A core Event about `owner` (shown by `kubectl describe` and `kubectl events`)."""
        meta = owner["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": owner.get("apiVersion", API_VERSION),
                "kind": owner.get("kind", KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": os.environ.get("POD_ID", FIELD_MANAGER),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        return self.create(EVENTS, meta["namespace"], event)

    def watch_configmaps(self, namespace: str, *, resource_version: str | None, timeout_seconds: int) -> Iterator[tuple[str, Manifest]]:
        """(event type, ConfigMap) pairs from one watch request; ends after `timeout_seconds`."""
        core = client.CoreV1Api(self.api)
        stream = watch.Watch().stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
        )
        try:
            for event in stream:
                obj = event["raw_object"] if "raw_object" in event else event["object"]
                yield str(event["type"]), obj
        except client.ApiException as exc:
            raise ApiError(exc.status or 0, _message(exc.body) or str(exc.reason)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, f"watch interrupted: {exc}") from None


def _message(body: Any) -> str:
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    return str(data.get("message", "")) if isinstance(data, dict) else str(data)
