"""The act stage of a reconcile pass: carry out a `Plan` through the API client, in its order.

ConfigMaps first (the Service's pods mount them), then the Knative Service, then PingSources
and Triggers; children the function no longer wants are pruned after the Service stops
mounting them, and unresolved Eventing children are nudged last. Transient API errors
propagate as ApiError (the pass is retried); a write refused for good is recorded and the
rest of the plan still runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..render.manifest import Manifest
from ..render.service import MIN_SCALE
from .children import EVENTING_KINDS, SUBSCRIBER_ANNOTATION, ChildKey, child_key, label
from .decide import Plan, Write
from .kube_client import ApiError, KubeClient, resource_of


@dataclass
class Acted:
    """What the writes did."""

    children: dict[ChildKey, Manifest]  # the function's children as they now are
    service: Manifest | None = None  # the Service as applied (None: not applied)
    service_error: str | None = None  # the API server refused the Service for good
    children_applied: int = 0
    children_deleted: int = 0
    config_map_errors: list[str] = field(default_factory=list)
    eventing_errors: list[str] = field(default_factory=list)
    not_served: list[str] = field(default_factory=list)  # kinds found unserved while applying
    min_scale_set: list[str] = field(default_factory=list)  # Revisions whose min-scale was written (pre-warm)
    min_scale_errors: list[str] = field(default_factory=list)


def act(client: KubeClient, plan: Plan, children: Mapping[ChildKey, Manifest] | None) -> Acted:
    """Apply, prune and nudge as `plan` says, starting from the function's `children` as observed."""
    acted = Acted(children={**(children or {}), **plan.adopted})
    for write in plan.config_maps:
        _apply_child(client, write, acted, acted.config_map_errors)
    if plan.service is not None:
        acted.service, acted.service_error = _apply_service(client, plan.service)
    for write in plan.eventing:
        _apply_child(client, write, acted, acted.eventing_errors)
    for obj in plan.prune:
        meta = obj["metadata"]
        client.delete(resource_of(obj), meta.get("namespace"), meta["name"], uid=meta.get("uid"))
        acted.children.pop(child_key(obj), None)
        acted.children_deleted += 1
    for obj in plan.nudge:
        _nudge(client, obj, plan.address, acted)
    for revision, value in plan.min_scale:
        _set_min_scale(client, revision, value, acted)
    return acted


def _set_min_scale(client: KubeClient, revision: Manifest, value: str, acted: Acted) -> None:
    """Write only the Revision's min-scale annotation (any other annotation would roll its pods)."""
    meta = revision["metadata"]
    try:
        client.merge_patch(revision, {"metadata": {"uid": meta.get("uid"), "annotations": {MIN_SCALE: value}}})
        acted.min_scale_set.append(f"{meta['name']}={value}")
    except ApiError as exc:
        if exc.transient:
            raise
        if exc.status != 404:  # a Revision deleted since it was listed needs nothing
            acted.min_scale_errors.append(f"Revision {meta['name']}: the API server refused min-scale {value}: {exc.message}")


def replaced(exc: ApiError) -> bool:
    """Whether an apply with a uid precondition was refused because the name now holds another object."""
    return exc.status == 422 and "metadata.uid" in exc.message


def _apply_service(client: KubeClient, write: Write) -> tuple[Manifest | None, str | None]:
    """Apply the Service; an existing one (already known to be ours) only if it is still that object."""
    try:
        return client.apply(write.obj, uid=write.uid), None
    except ApiError as exc:
        if exc.transient:
            raise
        if replaced(exc):
            raise ApiError(409, f"Knative Service {write.obj['metadata']['name']} was replaced while being applied: {exc.message}") from None
        return None, f"the API server rejected the Knative Service: {exc.message}"


def _apply_child(client: KubeClient, write: Write, acted: Acted, errors: list[str]) -> None:
    obj = write.obj
    try:
        acted.children[child_key(obj)] = client.apply(obj, uid=write.uid)
        acted.children_applied += 1
    except ApiError as exc:
        if exc.transient:
            raise
        if replaced(exc):
            raise ApiError(409, f"{label(obj)} was replaced while being applied: {exc.message}") from None  # the next pass looks again
        if exc.status == 404 and obj["kind"] in EVENTING_KINDS and not client.serves(obj["apiVersion"]):
            if obj["kind"] not in acted.not_served:
                acted.not_served.append(obj["kind"])
            return
        errors.append(f"{label(obj)}: the API server rejected it: {exc.message}")


def _nudge(client: KubeClient, obj: Manifest, address: str | None, acted: Acted) -> None:
    """Annotate a child with the Service's address, which makes Eventing reconcile it now (children.to_nudge)."""
    meta = obj["metadata"]
    try:
        acted.children[child_key(obj)] = client.merge_patch(obj, {"metadata": {"uid": meta.get("uid"), "annotations": {SUBSCRIBER_ANNOTATION: address}}})
    except ApiError as exc:
        if exc.transient:
            raise
        # Gone or replaced since it was observed: the next pass sees it as it is.
