"""One reconcile pass for one function: spec -> render -> pre-flight -> apply -> status.

Applied in order: the handler-code ConfigMap (the Service's pods mount it), the Knative Service,
then PingSources and Triggers; children the function no longer wants are pruned last.

Synchronous and free of kopf; the handlers run it in a worker thread. What it needs from
outside (Knative's ConfigMaps, pod scheduling) is passed in as plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .kube_client import AIFUNCTIONS, KNATIVE_SERVICES, ApiError, KubeClient
from .children import EVENTING_KINDS, ChildKey, ChildrenResult, apply_children, child_key, controlled_by, covers, label, list_children, not_served_message, nudge_subscribers, prune_children, replaced
from ..render.config import OperatorConfig
from ..constants import FIELD_MANAGER
from .preflight import find_blockers
from ..render import render
from ..spec import AIFunction, InvalidSpec, parse_function
from .status import REASON_APPLY_FAILED, REASON_EVENTING_NOT_INSTALLED, REASON_NOT_OWNED, SPEC_VALID, Observation, build_status, condition, needs_write

__all__ = ["KnativeSettings", "Outcome", "covers", "is_ours", "reconcile"]

Manifest = dict[str, Any]


@dataclass(frozen=True)
class KnativeSettings:
    """Knative's `config-features` and `config-autoscaler` data; None when a ConfigMap is absent."""

    features: Mapping[str, str] | None = None
    autoscaler: Mapping[str, str] | None = None

    @property
    def known(self) -> bool:
        return self.features is not None or self.autoscaler is not None


@dataclass
class Outcome:
    """What a pass did, for handlers, metrics and tests."""

    status: Manifest
    status_written: bool = False
    applied: bool = False
    service: Manifest | None = None
    event: tuple[str, str] | None = None  # (reason, message) posted as a Warning
    errors: list[str] = field(default_factory=list)
    children: dict[ChildKey, Manifest] | None = None  # ConfigMaps, PingSources, Triggers as now live (None: not synced)
    children_applied: int = 0
    children_deleted: int = 0
    gone: bool = False  # the function no longer exists (a cached copy outlived it): nothing was written

    @property
    def result(self) -> str:
        """A short label for metrics: the Ready reason."""
        return str(self.status.get("reason") or "Unknown")


def utcnow() -> str:
    """Now, as Kubernetes writes times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile(
    kube: KubeClient,
    body: Mapping[str, Any],
    config: OperatorConfig,
    knative: KnativeSettings,
    *,
    unschedulable: str | None = None,
    live_service: Manifest | None = None,
    live_children: Mapping[ChildKey, Manifest] | None = None,
    body_is_fresh: bool = False,
    now: str | None = None,
) -> Outcome:
    """Bring the function's Knative Service and other children to their desired state and write the status if it changed.

    `live_service` is the Service as the watch last showed it (None: not seen, or deleted):
    when it already has every field we render, the apply is skipped. `live_children` are the
    function's ConfigMaps/PingSources/Triggers as the watches last showed them (None: unknown,
    so they are listed, unless the function has never been reconciled). Unless `body_is_fresh`
    (kopf just delivered it), a pass about to create the Service first checks that the function
    still exists. Transient API errors propagate as ApiError.
    """
    meta = body.get("metadata") or {}
    fn, errors = _parse(body)
    observation: dict[str, Any] = {"generation": meta.get("generation"), "spec_errors": tuple(errors), "unschedulable": unschedulable}
    outcome = Outcome(status={})
    desired: Manifest | None = None
    wanted_children: list[Manifest] = []
    if fn is not None:
        try:
            desired, *wanted_children = render(fn, config)
        except InvalidSpec as exc:
            observation["spec_errors"] = tuple(str(e) for e in exc.errors)
        observation["needs_gpu"] = fn.spec.resources.gpu.count > 0
    if desired is not None:
        blockers = find_blockers(desired, knative.features or {}, knative.autoscaler or {}) if knative.known else []
        observation["blockers"] = tuple(b.message(config.knative_namespace) for b in blockers)
        observation["features_checked"] = knative.known
        if not blockers:
            if live_service is None:  # not seen by the watch: is the name free, or ours?
                live_service = kube.get(KNATIVE_SERVICES, meta.get("namespace"), meta.get("name", ""))
                if live_service is None and not body_is_fresh and not _still_exists(kube, meta):
                    outcome.gone = True  # creating now would make objects owned by a deleted uid (GC'd, re-created, ...)
                    return outcome
            if live_service is not None and not is_ours(live_service, meta.get("uid")):
                observation["not_owned"] = f"Knative Service {meta.get('name')} already exists and was not created by this AIFunction; delete or rename one of them"
            else:
                live = dict(live_children) if live_children is not None else (list_children(kube, meta["namespace"], meta["name"]) if body.get("status") else {})
                result = ChildrenResult(live=live)
                apply_children(kube, [obj for obj in wanted_children if obj["kind"] == "ConfigMap"], meta.get("uid"), result)  # mounted by the pods
                if result.not_owned:  # the pods would mount someone else's ConfigMap: apply nothing more
                    observation["not_owned"] = "; ".join(result.not_owned)
                else:
                    if live_service is not None and covers(live_service, desired):
                        outcome.service = live_service
                    else:
                        outcome.service, observation["apply_error"] = _apply(kube, desired, live_service)
                        outcome.applied = observation["apply_error"] is None
                    apply_children(kube, [obj for obj in wanted_children if obj["kind"] != "ConfigMap"], meta.get("uid"), result)
                    prune_children(kube, wanted_children, meta.get("uid"), result)  # after the Service stops mounting old code
                    nudge_subscribers(kube, _address(outcome.service or live_service), meta.get("uid"), result)
                _record_children(outcome, observation, wanted_children, result)
    if outcome.service is None and not outcome.applied:
        outcome.service = live_service if live_service is not None else kube.get(KNATIVE_SERVICES, meta.get("namespace"), meta.get("name", ""))
    if outcome.service is not None and not is_ours(outcome.service, meta.get("uid")):
        outcome.service = None  # never mirror someone else's Service
    observation["service"] = outcome.service
    if "triggers" not in observation:
        observation["triggers"] = _trigger_states(wanted_children, live_children or {})
    previous = body.get("status") or {}
    outcome.status = build_status(Observation(**observation), previous, now or utcnow())
    if needs_write(outcome.status, previous):
        kube.patch_status(AIFUNCTIONS, meta["namespace"], meta["name"], outcome.status)
        outcome.status_written = True
    outcome.event = _invalid_spec_event(outcome.status, previous)
    if outcome.event:
        kube.post_event(body, type_="Warning", reason=outcome.event[0], message=outcome.event[1])
    outcome.errors = list(observation["spec_errors"])
    return outcome


def _address(service: Mapping[str, Any] | None) -> str | None:
    """The Knative Service's in-cluster address (where Eventing sends), once Knative has set it."""
    return (((service or {}).get("status") or {}).get("address") or {}).get("url")


def _parse(body: Mapping[str, Any]) -> tuple[AIFunction | None, list[str]]:
    try:
        return parse_function(body), []
    except InvalidSpec as exc:
        return None, [str(e) for e in exc.errors]


def _still_exists(kube: KubeClient, meta: Mapping[str, Any]) -> bool:
    """Whether the function this pass works for still exists (same uid), checked before creating its Service."""
    live = kube.get(AIFUNCTIONS, meta.get("namespace"), meta.get("name", ""))
    return live is not None and (live.get("metadata") or {}).get("uid") == meta.get("uid")


def _apply(kube: KubeClient, desired: Manifest, live: Mapping[str, Any] | None) -> tuple[Manifest | None, str | None]:
    """Apply the Service; an existing one (already checked to be ours) only if it is still that object."""
    try:
        return kube.apply(desired, uid=((live or {}).get("metadata") or {}).get("uid")), None
    except ApiError as exc:
        if exc.transient:
            raise
        if replaced(exc):
            raise ApiError(409, f"Knative Service {desired['metadata']['name']} was replaced while being applied: {exc.message}") from None
        return None, f"the API server rejected the Knative Service: {exc.message}"


def _record_children(outcome: Outcome, observation: dict[str, Any], wanted: list[Manifest], result: ChildrenResult) -> None:
    """Fold what happened to the children into the outcome and the observation for the status."""
    outcome.children = result.live
    outcome.children_applied = result.applied
    outcome.children_deleted = result.deleted
    config_map_errors = [e for e in result.errors if e.startswith("ConfigMap ")]
    if config_map_errors and observation.get("apply_error") is None:
        observation["apply_error"] = "; ".join(config_map_errors)
    eventing_errors = [e for e in result.errors if not e.startswith("ConfigMap ")]
    eventing_not_owned = [e for e in result.not_owned if not e.startswith("ConfigMap ")]
    if eventing_not_owned:
        observation["triggers_error"] = (REASON_NOT_OWNED, "; ".join(eventing_not_owned))
    elif result.not_served:
        observation["triggers_error"] = (REASON_EVENTING_NOT_INSTALLED, not_served_message(result.not_served))
    elif eventing_errors:
        observation["triggers_error"] = (REASON_APPLY_FAILED, "; ".join(eventing_errors))
    observation["triggers"] = _trigger_states(wanted, result.live)


def _trigger_states(wanted: list[Manifest], live: Mapping[ChildKey, Manifest]) -> tuple[tuple[str, Manifest | None], ...]:
    """Each wanted PingSource/Trigger, named for messages, with its live copy (None: not there)."""
    return tuple((label(obj), live.get(child_key(obj))) for obj in wanted if obj["kind"] in EVENTING_KINDS)


def _invalid_spec_event(status: Mapping[str, Any], previous: Mapping[str, Any]) -> tuple[str, str] | None:
    """A Warning event when the spec newly became invalid or its problems changed."""
    now_valid = condition(status, SPEC_VALID) or {}
    before = condition(previous, SPEC_VALID) or {}
    if now_valid.get("status") != "False":
        return None
    if before.get("status") == "False" and before.get("message") == now_valid.get("message"):
        return None
    return ("InvalidSpec", str(now_valid.get("message", "")))


def is_ours(service: Mapping[str, Any], uid: str | None) -> bool:
    """Whether a Service belongs to the function: it controls it, or the operator has applied it before."""
    if controlled_by(service, uid):
        return True
    return any(entry.get("manager") == FIELD_MANAGER for entry in (service.get("metadata") or {}).get("managedFields") or [])
