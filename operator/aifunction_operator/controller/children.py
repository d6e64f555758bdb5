"""A function's children besides its Knative Service: the handler-code ConfigMap, PingSources and
Triggers. Pure decisions (what to apply, what to prune, whose an object is) plus
`apply_children`/`prune_children`, which carry them out through `KubeClient` (apply.py stays the only
place that talks to the API).

Ownership: the operator writes and deletes only objects the function controls (a controller
reference with the function's uid). An object of a child's name that is someone else's is left
untouched and reported (`NotOwned`); every write and delete carries the uid of the object it
means as a precondition, so an object replaced in between is not overwritten or deleted either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .kube_client import CONFIGMAPS, EVENTING_TRIGGERS, PING_SOURCES, ApiError, KubeClient, Resource, resource_of
from ..constants import GROUP, LABEL_FUNCTION, LABEL_MANAGED_BY, MANAGED_BY

Manifest = dict[str, Any]
ChildKey = tuple[str, str]  # (kind, name)

CHILD_RESOURCES: dict[str, Resource] = {"ConfigMap": CONFIGMAPS, "PingSource": PING_SOURCES, "Trigger": EVENTING_TRIGGERS}
EVENTING_KINDS = ("PingSource", "Trigger")
# The condition in which Eventing says it could not resolve where a child sends events (the function).
SUBSCRIBER_CONDITIONS = {"Trigger": "SubscriberResolved", "PingSource": "SinkProvided"}
SUBSCRIBER_ANNOTATION = f"{GROUP}/subscriber-address"
EVENTING_INSTALL_HINT = "install Knative Eventing (its CRDs and core: eventing-crds.yaml, eventing-core.yaml) to run spec.triggers"


@dataclass
class ChildrenResult:
    """What applying and pruning did and saw."""

    live: dict[ChildKey, Manifest] = field(default_factory=dict)  # our children as they now are
    applied: int = 0
    deleted: int = 0
    not_served: list[str] = field(default_factory=list)  # wanted kinds the cluster does not serve
    errors: list[str] = field(default_factory=list)  # permanent rejections, "Kind name: message"
    not_owned: list[str] = field(default_factory=list)  # children whose name someone else's object holds


def child_key(obj: Mapping[str, Any]) -> ChildKey:
    """(kind, name) of an object."""
    return (str(obj.get("kind")), str((obj.get("metadata") or {}).get("name")))


def label(obj: Mapping[str, Any]) -> str:
    """"PingSource fn-nightly": how messages name a child."""
    kind, name = child_key(obj)
    return f"{kind} {name}"


def selector(function_name: str) -> str:
    """The label selector of a function's children."""
    return f"{LABEL_FUNCTION}={function_name},{LABEL_MANAGED_BY}={MANAGED_BY}"


def controlled_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    """Whether the function with `uid` is the object's controller."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(ref.get("controller") and ref.get("uid") == uid for ref in refs)


def covers(live: Any, desired: Any) -> bool:
    """Whether `live` holds every field of `desired` with the same value (servers may add fields)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(key in live and covers(live[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(covers(a, b) for a, b in zip(live, desired, strict=True))
    return bool(live == desired)


def not_owned_message(obj: Mapping[str, Any]) -> str:
    """Why a child is not written: its name is held by an object the function does not control."""
    return f"{label(obj)} already exists and is not controlled by this AIFunction; the operator leaves it untouched: delete or rename it"


def replaced(exc: ApiError) -> bool:
    """Whether an apply with a uid precondition was refused because the name now holds another object."""
    return exc.status == 422 and "metadata.uid" in exc.message


def to_apply(desired: Iterable[Manifest], live: Mapping[ChildKey, Manifest]) -> list[Manifest]:
    """Desired children that are missing or differ from the live copy in a field we render."""
    return [obj for obj in desired if not covers(live.get(child_key(obj)), obj)]


def to_prune(desired: Iterable[Manifest], live: Mapping[ChildKey, Manifest], uid: str | None) -> list[Manifest]:
    """Live children the function controls but no longer wants (a removed schedule, replaced code)."""
    wanted = {child_key(obj) for obj in desired}
    return [obj for key, obj in sorted(live.items()) if key not in wanted and controlled_by(obj, uid)]


def list_children(kube: KubeClient, namespace: str, function_name: str) -> dict[ChildKey, Manifest]:
    """Every ConfigMap, PingSource and Trigger labelled as the function's (unserved kinds: none)."""
    found: dict[ChildKey, Manifest] = {}
    for kind, resource in CHILD_RESOURCES.items():
        try:
            items = kube.list(resource, namespace, label_selector=selector(function_name))
        except ApiError as exc:
            if exc.status == 404 and kind in EVENTING_KINDS:
                continue  # Knative Eventing is not installed
            raise
        for item in items:
            found[(kind, item["metadata"]["name"])] = {"apiVersion": resource.api_version, "kind": kind, **item}
    return found


def apply_children(kube: KubeClient, desired: list[Manifest], uid: str | None, result: ChildrenResult) -> None:
    """Apply the desired children missing from or drifted in `result.live`, updating it.

    A child not known to be the function's is looked up by name first (the watches only see
    objects labelled ours): someone else's object is recorded in `result.not_owned` and left
    alone. Transient API errors propagate; a kind the cluster does not serve and permanent
    rejections are recorded in the result.
    """
    for obj in to_apply(desired, result.live):
        key = child_key(obj)
        try:
            current = result.live.get(key)
            if current is None or not controlled_by(current, uid):
                current = kube.find(resource_of(obj), obj["metadata"].get("namespace"), obj["metadata"]["name"])
            if current is not None and not controlled_by(current, uid):
                result.not_owned.append(not_owned_message(obj))
                continue
            if current is not None and covers(current, obj):
                result.live[key] = current  # ours and as rendered: the cache was behind
                continue
            result.live[key] = kube.apply(obj, uid=(current or {}).get("metadata", {}).get("uid"))
            result.applied += 1
        except ApiError as exc:
            if exc.transient:
                raise
            if replaced(exc):
                raise ApiError(409, f"{label(obj)} was replaced while being applied: {exc.message}") from None  # the next pass looks again
            if exc.status == 404 and obj["kind"] in EVENTING_KINDS and not kube.serves(obj["apiVersion"]):
                if obj["kind"] not in result.not_served:
                    result.not_served.append(obj["kind"])
                continue
            result.errors.append(f"{label(obj)}: the API server rejected it: {exc.message}")


def prune_children(kube: KubeClient, desired: list[Manifest], uid: str | None, result: ChildrenResult) -> None:
    """Delete the children in `result.live` that the function controls but no longer wants."""
    for obj in to_prune(desired, result.live, uid):
        kube.delete(resource_of(obj), obj["metadata"].get("namespace"), obj["metadata"]["name"], uid=obj["metadata"].get("uid"))
        result.live.pop(child_key(obj), None)
        result.deleted += 1


def to_nudge(live: Mapping[ChildKey, Manifest], address: str | None, uid: str | None) -> list[Manifest]:
    """Our Triggers/PingSources that Eventing left unresolved although the function's Service has an address now.

    Eventing resolves a subscriber when it reconciles the Trigger; one that failed because the
    Service had no address yet is retried with a growing backoff, and the Service becoming
    addressable does not wake it (knative/eventing#5374): a function that took minutes to become
    Ready kept a Trigger `SubscriberResolved=False` for minutes more. Each such child is nudged
    once per address (the annotation records it), so there is no loop.
    """
    if not address:
        return []
    stale = []
    for obj in live.values():
        kind_condition = SUBSCRIBER_CONDITIONS.get(str(obj.get("kind")))
        if kind_condition is None or not controlled_by(obj, uid):
            continue
        conditions = (obj.get("status") or {}).get("conditions") or []
        resolved = next((c for c in conditions if c.get("type") == kind_condition), {})
        nudged = ((obj.get("metadata") or {}).get("annotations") or {}).get(SUBSCRIBER_ANNOTATION)
        if resolved.get("status") == "False" and nudged != address:
            stale.append(obj)
    return stale


def nudge_subscribers(kube: KubeClient, address: str | None, uid: str | None, result: ChildrenResult) -> None:
    """Annotate each child of `to_nudge` with the address, which makes Eventing reconcile it now."""
    for obj in to_nudge(result.live, address, uid):
        meta = obj["metadata"]
        patch = {"metadata": {"uid": meta.get("uid"), "annotations": {SUBSCRIBER_ANNOTATION: address}}}
        try:
            result.live[child_key(obj)] = kube.request(
                "PATCH", resource_of(obj).path(meta.get("namespace"), meta["name"]), body=patch,
                content_type="application/merge-patch+json")
        except ApiError as exc:
            if exc.transient:
                raise
            # Gone or replaced since the watch showed it: the next pass sees it as it is.


def not_served_message(kinds: Iterable[str]) -> str:
    """What to install when the cluster lacks Knative Eventing's kinds."""
    names = ", ".join(f"{kind} ({CHILD_RESOURCES[kind].plural}.{CHILD_RESOURCES[kind].api_version.split('/')[0]})" for kind in kinds)
    return f"this cluster does not serve {names}: {EVENTING_INSTALL_HINT}"
