"""The observe stage of a reconcile pass: read what the decision needs, and nothing else.

What the watches already showed is passed in (`Cached`) and only the rest is read: the Knative
Service when no watch event has shown it, the function itself before creating its Service, the
function's children when the cache does not know them, and, by name, each wanted child not
known to be the function's (the watches see only objects labelled ours). Reads only; transient
API errors propagate as ApiError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..render.manifest import Manifest
from ..render.service import GPU_PRODUCT_LABEL
from .children import EVENTING_KINDS, ChildKey, child_key, controlled_by, is_ours, selector
from .decide import Observed, Wanted
from .kube_client import (AIFUNCTIONS, CONFIGMAPS, EVENTING_TRIGGERS, KNATIVE_SERVICES, NODES, PING_SOURCES, REVISIONS, ApiError, KubeClient,
                          Resource, resource_of)

CHILD_RESOURCES: dict[str, Resource] = {"ConfigMap": CONFIGMAPS, "PingSource": PING_SOURCES, "Trigger": EVENTING_TRIGGERS}


@dataclass(frozen=True)
class Cached:
    """What the operator's watches last showed for the function."""

    service: Manifest | None = None  # None: not seen (absent, or not watched yet)
    children: Mapping[ChildKey, Manifest] | None = None  # None: unknown, so they are listed
    body_is_fresh: bool = False  # kopf just delivered the body: the function exists
    reconciled_before: bool = True  # False: the function has no status yet, so no children either
    unschedulable: str | None = None  # from the pod watch
    running_on: tuple[str, ...] = ()  # nodes the function's running pods are on (the pod watch)


def observe(client: KubeClient, wanted: Wanted, cached: Cached) -> Observed:
    """Read what `decide` and the status need for `wanted`."""
    service = cached.service if cached.service is not None else client.get(KNATIVE_SERVICES, wanted.namespace, wanted.name)
    gpu_products = gpu_products_of(client, cached.running_on) if wanted.needs_gpu else ()
    if not wanted.appliable:
        return Observed(service=service, children=cached.children, unschedulable=cached.unschedulable, gpu_products=gpu_products)
    if service is None and not cached.body_is_fresh and not _still_exists(client, wanted):
        return Observed(gone=True)  # creating now would make objects owned by a deleted uid
    if service is not None and not is_ours(service, wanted.uid):
        return Observed(service=service, children=cached.children, unschedulable=cached.unschedulable, gpu_products=gpu_products)
    if cached.children is not None:
        children = dict(cached.children)
    elif cached.reconciled_before:
        children = list_children(client, wanted.namespace, wanted.name)
    else:
        children = {}
    by_name: dict[ChildKey, Manifest | None] = {}
    errors: dict[ChildKey, str] = {}
    not_served: list[str] = []
    for obj in wanted.children:
        key = child_key(obj)
        known = children.get(key)
        if (known is not None and controlled_by(known, wanted.uid)) or obj["kind"] in not_served:
            continue
        try:
            by_name[key] = client.find(resource_of(obj), wanted.namespace, obj["metadata"]["name"])
        except ApiError as exc:
            if exc.transient:
                raise
            if exc.status == 404 and obj["kind"] in EVENTING_KINDS and not client.serves(obj["apiVersion"]):
                not_served.append(obj["kind"])
            else:
                errors[key] = f"{obj['kind']} {obj['metadata']['name']}: the API server refused to look it up: {exc.message}"
    revisions, revisions_error = list_revisions(client, wanted) if wanted.check_revisions and service is not None else (None, None)
    return Observed(service=service, children=children, by_name=by_name, lookup_errors=errors,
                    not_served=tuple(not_served), unschedulable=cached.unschedulable, gpu_products=gpu_products,
                    revisions=revisions, revisions_error=revisions_error)


def list_revisions(client: KubeClient, wanted: Wanted) -> tuple[tuple[Manifest, ...] | None, str | None]:
    """The function's Knative Revisions (for scheduled pre-warm), or None and why they cannot be read."""
    try:
        items = client.list(REVISIONS, wanted.namespace, label_selector=f"serving.knative.dev/service={wanted.name}")
    except ApiError as exc:
        if exc.transient:
            raise
        return None, f"cannot list the Knative Revisions of {wanted.name} (the operator needs get, list, watch and patch on revisions): {exc.message}"
    return tuple({"apiVersion": REVISIONS.api_version, "kind": "Revision", **item} for item in items), None


def list_children(client: KubeClient, namespace: str, function_name: str) -> dict[ChildKey, Manifest]:
    """Every ConfigMap, PingSource and Trigger labelled as the function's (unserved kinds: none)."""
    found: dict[ChildKey, Manifest] = {}
    for kind, resource in CHILD_RESOURCES.items():
        try:
            items = client.list(resource, namespace, label_selector=selector(function_name))
        except ApiError as exc:
            if exc.status == 404 and kind in EVENTING_KINDS:
                continue  # Knative Eventing is not installed
            raise
        for item in items:
            found[(kind, item["metadata"]["name"])] = {"apiVersion": resource.api_version, "kind": kind, **item}
    return found


def gpu_products_of(client: KubeClient, nodes: tuple[str, ...]) -> tuple[str, ...]:
    """The nvidia.com/gpu.product label of each node (sorted, without repeats); a node that cannot be read counts as unknown."""
    products = set()
    for name in nodes:
        try:
            node = client.get(NODES, None, name)
        except ApiError as exc:
            if exc.transient:
                raise
            continue  # no right to read nodes (an older chart) or gone: the product stays unknown
        product = (((node or {}).get("metadata") or {}).get("labels") or {}).get(GPU_PRODUCT_LABEL)
        if product:
            products.add(product)
    return tuple(sorted(products))


def _still_exists(client: KubeClient, wanted: Wanted) -> bool:
    """Whether the function this pass works for still exists (same uid), checked before creating its Service."""
    live = client.get(AIFUNCTIONS, wanted.namespace, wanted.name)
    return live is not None and (live.get("metadata") or {}).get("uid") == wanted.uid
