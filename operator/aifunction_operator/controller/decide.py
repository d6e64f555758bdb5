"""The decide stage of a reconcile pass (pure): what the spec wants, then what to change.

`want` runs before the cluster is looked at (parse, render, pre-flight: it also names what
observe.py must read); `decide` compares it with what observe.py saw and returns the `Plan`
that act.py carries out. Neither makes a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..render import render_function
from ..render.config import OperatorConfig
from ..render.manifest import Manifest
from ..render.service import MIN_SCALE, canary_traffic, with_traffic
from ..spec import InvalidSpec, parse_function
from ..spec.model import Rollout
from ..spec.prewarm import Prewarm, prewarm_at
from .children import ChildKey, child_key, controlled_by, covers, is_ours, not_owned_message, to_nudge, to_prune
from .preflight import KnativeSettings, find_blockers
from .status import stable_revision


@dataclass(frozen=True)
class Wanted:
    """What the function's spec asks for, before looking at the cluster."""

    namespace: str
    name: str
    uid: str | None
    generation: int | None
    spec_errors: tuple[str, ...] = ()  # "spec.field: message"; empty when the spec is valid
    needs_gpu: bool = False
    acceptable_products: tuple[str, ...] = ()  # GPU products the pods may run on, preferred first (empty: any)
    service: Manifest | None = None  # the Knative Service (None: the spec is invalid)
    config_maps: tuple[Manifest, ...] = ()  # handler code, mounted by the Service's pods
    eventing: tuple[Manifest, ...] = ()  # PingSources and Triggers
    blockers: tuple[str, ...] = ()  # Knative settings that would make the webhook refuse the Service
    features_checked: bool = True  # False when Knative's settings could not be read
    rollout: Rollout = Rollout()
    stable_revision: str | None = None  # the last fully rolled-out Revision, as the status recorded it
    prewarm: Prewarm | None = None  # the pre-warm floor and windows now (None: no spec.scaling.schedules)
    base_min_replicas: int = 0  # spec.scaling.minReplicas: the floor outside windows
    check_revisions: bool = False  # windows exist, or did (status.prewarm): the Revisions' min-scale is looked at

    @property
    def appliable(self) -> bool:
        """Whether anything may be written: the spec rendered and no Knative setting blocks it."""
        return self.service is not None and not self.blockers

    @property
    def children(self) -> tuple[Manifest, ...]:
        return self.config_maps + self.eventing


@dataclass(frozen=True)
class Observed:
    """What observe.py read for one pass."""

    service: Manifest | None = None  # the function's Knative Service (None: there is none)
    # The function's labelled ConfigMaps/PingSources/Triggers (None: not looked at).
    children: Mapping[ChildKey, Manifest] | None = None
    # Wanted children not known to be the function's, looked up by name (None: no such object).
    by_name: Mapping[ChildKey, Manifest | None] = field(default_factory=dict)
    lookup_errors: Mapping[ChildKey, str] = field(default_factory=dict)  # lookups the API server refused
    not_served: tuple[str, ...] = ()  # wanted kinds the cluster does not serve (Eventing not installed)
    gone: bool = False  # the function no longer exists: nothing may be written for it
    unschedulable: str | None = None  # the scheduler's message for a Pending pod
    gpu_products: tuple[str, ...] = ()  # the GPU products of the nodes the function's running pods are on
    revisions: tuple[Manifest, ...] | None = None  # the Service's Revisions (None: not looked at, or refused)
    revisions_error: str | None = None  # why the Revisions could not be listed


@dataclass(frozen=True)
class Write:
    """One server-side apply; `uid` is the live object's, as a precondition (None: create)."""

    obj: Manifest
    uid: str | None = None


@dataclass(frozen=True)
class Plan:
    """What act.py does, in this order: ConfigMaps, the Service, PingSources/Triggers, prune, nudge."""

    config_maps: tuple[Write, ...] = ()
    service: Write | None = None  # None: nothing to apply (unchanged, blocked, or not ours)
    eventing: tuple[Write, ...] = ()
    prune: tuple[Manifest, ...] = ()  # the function's children it no longer wants
    nudge: tuple[Manifest, ...] = ()  # children Eventing left unresolved (children.to_nudge)
    address: str | None = None  # the Service's address, written on nudged children
    not_owned: tuple[str, ...] = ()  # the Service's or a ConfigMap's name is someone else's: nothing else is done
    eventing_not_owned: tuple[str, ...] = ()  # PingSources/Triggers whose name is someone else's
    adopted: Mapping[ChildKey, Manifest] = field(default_factory=dict)  # found by name, ours and as rendered
    min_scale: tuple[tuple[Manifest, str], ...] = ()  # Revisions whose min-scale annotation is set to the value (pre-warm)


def want(body: Mapping[str, Any], config: OperatorConfig, knative: KnativeSettings, now: datetime) -> Wanted:
    """Parse, render and pre-flight the function at `now`: its desired objects, or why there are none."""
    meta = body.get("metadata") or {}
    identity = {"namespace": str(meta.get("namespace") or ""), "name": str(meta.get("name") or ""),
                "uid": meta.get("uid"), "generation": meta.get("generation")}
    try:
        fn = parse_function(body)
    except InvalidSpec as exc:
        return Wanted(**identity, spec_errors=tuple(str(e) for e in exc.errors))
    gpu = fn.spec.resources.gpu
    scaling = fn.spec.scaling
    identity.update(needs_gpu=gpu.count > 0, acceptable_products=gpu.acceptable_products, rollout=fn.spec.rollout,
                    stable_revision=stable_revision(body.get("status")), base_min_replicas=scaling.min_replicas,
                    prewarm=prewarm_at(scaling, now) if scaling.schedules else None,
                    check_revisions=bool(scaling.schedules or (body.get("status") or {}).get("prewarm")))
    try:
        rendered = render_function(fn, config)
    except InvalidSpec as exc:
        return Wanted(**identity, spec_errors=tuple(str(e) for e in exc.errors))
    blockers = find_blockers(rendered.service, knative.features or {}, knative.autoscaler or {}) if knative.known else []
    return Wanted(**identity, service=rendered.service, config_maps=rendered.config_maps,
                  eventing=rendered.eventing, blockers=tuple(b.message(config.knative_namespace) for b in blockers),
                  features_checked=knative.known)


def decide(wanted: Wanted, observed: Observed) -> Plan:
    """The writes that bring the cluster to `wanted`, given what was `observed`."""
    if not wanted.appliable or observed.gone:
        return Plan()
    service = observed.service
    if service is not None and not is_ours(service, wanted.uid):
        return Plan(not_owned=(f"Knative Service {wanted.name} already exists and was not created by this AIFunction; delete or rename one of them",))
    if observed.children is None:  # not looked at (observe always looks when it may write)
        return Plan()
    config_maps, not_owned, adopted = _child_writes(wanted.config_maps, wanted.uid, observed)
    if not_owned:  # the pods would mount someone else's ConfigMap: apply nothing more
        return Plan(config_maps=config_maps, not_owned=not_owned, adopted=adopted)
    assert wanted.service is not None  # appliable
    # A canary shares traffic with the rolled-out revision; a Service that is not there yet has none.
    desired = with_traffic(wanted.service, canary_traffic(wanted.rollout, wanted.stable_revision if service is not None else None))
    service_write = None if service is not None and covers(service, desired) else Write(desired, _uid(service))
    eventing, eventing_not_owned, adopted_eventing = _child_writes(
        tuple(obj for obj in wanted.eventing if obj["kind"] not in observed.not_served), wanted.uid, observed)
    live = {**observed.children, **adopted, **adopted_eventing}
    prune = tuple(to_prune(wanted.children, live, wanted.uid))
    pruned = {child_key(obj) for obj in prune}
    address = _address(service)
    nudge = tuple(obj for obj in to_nudge(live, address, wanted.uid) if child_key(obj) not in pruned)
    return Plan(config_maps=config_maps, service=service_write, eventing=eventing, prune=prune, nudge=nudge, address=address,
                eventing_not_owned=eventing_not_owned, adopted={**adopted, **adopted_eventing},
                min_scale=min_scale_writes(wanted, service, observed.revisions))


def min_scale_writes(wanted: Wanted, service: Mapping[str, Any] | None, revisions: tuple[Manifest, ...] | None) -> tuple[tuple[Manifest, str], ...]:
    """The Revisions whose `autoscaling.knative.dev/min-scale` must change for scheduled pre-warm, with the value.

    Knative honours min-scale only on routed Revisions and reads it from the Revision (a template
    change would create a new Revision; docs/knative.md): the routed ones get the pre-warm floor,
    and one raised earlier that no longer is routed gets spec.scaling.minReplicas back (set, not
    removed: a missing key means the cluster's default).
    """
    if revisions is None:
        return ()
    routed = _routed(service)
    floor = wanted.prewarm.min_replicas if wanted.prewarm else wanted.base_min_replicas
    writes = []
    for revision in revisions:
        meta = revision.get("metadata") or {}
        current = (meta.get("annotations") or {}).get(MIN_SCALE)
        if meta.get("name") in routed:
            wanted_value = str(floor)
        elif current is not None and current.isdigit() and int(current) > wanted.base_min_replicas:
            wanted_value = str(wanted.base_min_replicas)
        else:
            continue
        if current != wanted_value:
            writes.append((revision, wanted_value))
    return tuple(writes)


def unmeasured_revisions(wanted: Wanted, service: Mapping[str, Any] | None, revisions: tuple[Manifest, ...] | None) -> tuple[str, ...]:
    """Routed Revisions a window wants warm that Knative's autoscaler cannot scale yet.

    A Revision created with initial scale 0 that has never had a pod has no metrics: its
    PodAutoscaler's desired scale is unknown (-1, and the Revision has no status.desiredReplicas)
    and the KPA applies no bounds, min-scale included, until its first request (seen on make cluster).
    """
    if revisions is None or wanted.prewarm is None or wanted.prewarm.min_replicas <= wanted.base_min_replicas:
        return ()
    routed = _routed(service)
    return tuple(r["metadata"]["name"] for r in revisions
                 if r["metadata"].get("name") in routed and "desiredReplicas" not in (r.get("status") or {}))


def _routed(service: Mapping[str, Any] | None) -> set[str]:
    """The Revisions the Service's status routes traffic to (0% tags included)."""
    return {str(t["revisionName"]) for t in (((service or {}).get("status") or {}).get("traffic") or []) if t.get("revisionName")}


def _child_writes(desired: tuple[Manifest, ...], uid: str | None, observed: Observed) -> tuple[tuple[Write, ...], tuple[str, ...], dict[ChildKey, Manifest]]:
    """For each desired child: a write (missing or drifted), a not-owned message, or nothing (as rendered)."""
    assert observed.children is not None
    writes: list[Write] = []
    not_owned: list[str] = []
    adopted: dict[ChildKey, Manifest] = {}
    for obj in desired:
        key = child_key(obj)
        if key in observed.lookup_errors:
            continue  # reported as an error; the next pass looks again
        current = observed.children.get(key)
        if current is None or not controlled_by(current, uid):
            current = observed.by_name.get(key)
            if current is not None and not controlled_by(current, uid):
                not_owned.append(not_owned_message(obj))
                continue
            if current is not None and covers(current, obj):
                adopted[key] = current  # ours and as rendered: the watch cache was behind
                continue
        elif covers(current, obj):
            continue
        writes.append(Write(obj, _uid(current)))
    return tuple(writes), tuple(not_owned), adopted


def _uid(obj: Mapping[str, Any] | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("uid")


def _address(service: Mapping[str, Any] | None) -> str | None:
    """The Knative Service's in-cluster address (where Eventing sends), once Knative has set it."""
    return (((service or {}).get("status") or {}).get("address") or {}).get("url")
