"""A function's children besides its Knative Service: the handler-code ConfigMap, PingSources and
Triggers. Pure decisions about them (what to apply, what to prune, whose an object is, which
to nudge); observe.py reads them and act.py writes them.

Ownership: the operator writes and deletes only objects the function controls (a controller
reference with the function's uid). An object of a child's name that is someone else's is left
untouched and reported (`NotOwned`); every write and delete carries the uid of the object it
means as a precondition, so an object replaced in between is not overwritten or deleted either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..constants import FIELD_MANAGER, GROUP, LABEL_FUNCTION, LABEL_MANAGED_BY, MANAGED_BY
from ..render.manifest import Manifest

ChildKey = tuple[str, str]  # (kind, name)

# Each child kind's resource name, for messages about what the cluster does not serve.
CHILD_RESOURCE_NAMES = {"ConfigMap": "configmaps", "PingSource": "pingsources.sources.knative.dev", "Trigger": "triggers.eventing.knative.dev"}
EVENTING_KINDS = ("PingSource", "Trigger")
# The condition in which Eventing says it could not resolve where a child sends events (the function).
SUBSCRIBER_CONDITIONS = {"Trigger": "SubscriberResolved", "PingSource": "SinkProvided"}
SUBSCRIBER_ANNOTATION = f"{GROUP}/subscriber-address"
EVENTING_INSTALL_HINT = "install Knative Eventing (its CRDs and core: eventing-crds.yaml, eventing-core.yaml) to run spec.triggers"


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


def to_apply(desired: Iterable[Manifest], live: Mapping[ChildKey, Manifest]) -> list[Manifest]:
    """Desired children that are missing or differ from the live copy in a field we render."""
    return [obj for obj in desired if not covers(live.get(child_key(obj)), obj)]


def to_prune(desired: Iterable[Manifest], live: Mapping[ChildKey, Manifest], uid: str | None) -> list[Manifest]:
    """Live children the function controls but no longer wants (a removed schedule, replaced code)."""
    wanted = {child_key(obj) for obj in desired}
    return [obj for key, obj in sorted(live.items()) if key not in wanted and controlled_by(obj, uid)]


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


def not_served_message(kinds: Iterable[str]) -> str:
    """What to install when the cluster lacks Knative Eventing's kinds."""
    names = ", ".join(f"{kind} ({CHILD_RESOURCE_NAMES[kind]})" for kind in kinds)
    return f"this cluster does not serve {names}: {EVENTING_INSTALL_HINT}"


def is_ours(obj: Mapping[str, Any], uid: str | None) -> bool:
    """Whether an object belongs to the function: it controls it, or the operator has applied it before."""
    if controlled_by(obj, uid):
        return True
    return any(entry.get("manager") == FIELD_MANAGER for entry in (obj.get("metadata") or {}).get("managedFields") or [])
