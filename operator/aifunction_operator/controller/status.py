"""An AIFunction's status from what the operator observed (pure; part of a reconcile pass's decide step).

Conditions follow the Knative model: `Ready` aggregates `SpecValid`, `KnativeFeaturesReady`,
`ServiceReady` and `TriggersReady`; `PodsScheduled` explains a wait for a (GPU) node. A condition's
`lastTransitionTime` moves only when its status flips. The clock is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..spec.prewarm import Prewarm

READY = "Ready"
SPEC_VALID = "SpecValid"
FEATURES_READY = "KnativeFeaturesReady"
SERVICE_READY = "ServiceReady"
PODS_SCHEDULED = "PodsScheduled"
TRIGGERS_READY = "TriggersReady"
CONDITION_TYPES = (READY, SPEC_VALID, FEATURES_READY, SERVICE_READY, TRIGGERS_READY, PODS_SCHEDULED)

REASON_READY = "Ready"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_FEATURE_DISABLED = "KnativeFeatureDisabled"
REASON_WAITING_FOR_GPU = "WaitingForGPUNode"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_APPLY_FAILED = "ApplyFailed"
REASON_NOT_OWNED = "NotOwned"
REASON_SERVICE_MISSING = "ServiceMissing"
REASON_DEPLOYING = "Deploying"
REASON_NO_TRIGGERS = "NoTriggers"
REASON_TRIGGERS_READY = "TriggersReady"
REASON_EVENTING_NOT_INSTALLED = "EventingNotInstalled"
REASON_EVENTING_NOT_READY = "EventingNotReady"
REASON_TRIGGER_NOT_READY = "TriggerNotReady"

STATUS_KEYS = ("observedGeneration", "url", "address", "latestReadyRevision", "gpuProduct", "rollout", "prewarm", "reason", "conditions")


@dataclass(frozen=True)
class Findings:
    """Everything one reconcile learned about a function, as plain values."""

    generation: int | None
    spec_errors: tuple[str, ...] = ()  # "spec.field: message", empty when the spec is valid
    blockers: tuple[str, ...] = ()  # pre-flight messages naming the ConfigMap key to set
    features_checked: bool = True  # False when Knative's ConfigMaps could not be read
    service: Mapping[str, Any] | None = None  # the live Knative Service
    apply_error: str | None = None  # a permanent rejection of the Service by the apiserver
    not_owned: str | None = None  # a Service of that name exists and belongs to someone else
    unschedulable: str | None = None  # the scheduler's message for a Pending pod
    needs_gpu: bool = False
    acceptable_products: tuple[str, ...] = ()  # GPU products the pods may run on, preferred first
    gpu_product: str | None = None  # the product of the node a running pod is on
    canary: bool = False  # spec.rollout asks for a split (or a rollback: 0)
    canary_percent: int | None = None
    stable_revision: str | None = None  # the last fully rolled-out Revision, as the stored status says
    # The PingSources/Triggers the function wants: ("PingSource fn-nightly", live object or None).
    triggers: tuple[tuple[str, Mapping[str, Any] | None], ...] = ()
    triggers_error: tuple[str, str] | None = None  # (reason, message): Eventing missing, or a rejection
    prewarm: Prewarm | None = None  # the pre-warm floor and windows now (None: no spec.scaling.schedules)
    base_min_replicas: int = 0  # spec.scaling.minReplicas
    prewarm_problem: str | None = None  # why the Revisions' min-scale could not be read or written


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def build_status(obs: Findings, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The complete status for `obs`; `previous` is the status now stored, `now` an RFC 3339 time."""
    spec = _spec_condition(obs)
    features = _features_condition(obs)
    service = _service_condition(obs)
    triggers = _triggers_condition(obs)
    pods = _pods_condition(obs)
    ready = _ready_condition(spec, features, service, triggers, pods)
    conditions = [_with_time(c, previous, now) for c in (ready, spec, features, service, triggers, pods)]
    ksvc_status = (obs.service or {}).get("status") or {}
    reason = pods.reason if ready.status == "True" and pods.status == "False" else ready.reason
    return {
        "observedGeneration": obs.generation,
        "url": ksvc_status.get("url"),
        "address": (ksvc_status.get("address") or {}).get("url"),
        "latestReadyRevision": ksvc_status.get("latestReadyRevisionName"),
        "gpuProduct": obs.gpu_product,
        "rollout": _rollout(obs),
        "prewarm": _prewarm(obs),
        "reason": reason,
        "conditions": conditions,
    }


def normalized(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored status with every key present (None where absent), to compare with build_status.

    `rollout`'s and `prewarm`'s keys set to None are written (a merge patch removes them) but never stored.
    """
    status = status or {}
    values = {key: status.get(key) for key in STATUS_KEYS}
    for key in ("rollout", "prewarm"):
        values[key] = {k: v for k, v in (values[key] or {}).items() if v is not None} or None
    return values


def stable_revision(status: Mapping[str, Any] | None) -> str | None:
    """The function's last fully rolled-out Revision (before the rollout status existed: its latest ready one)."""
    status = status or {}
    return (status.get("rollout") or {}).get("stableRevision") or status.get("latestReadyRevision")


def _rollout(obs: Findings) -> dict[str, Any] | None:
    """Which revision is rolled out, which is the canary, and the split Knative routes (from its Service status).

    The rolled-out revision moves to the latest one once Knative has it Ready with every revision
    created (the Service's status describes its current generation) and no canary holds it back;
    a first deployment is rolled out even with a canary asked for. All keys are present, None
    where unset, so that a merge patch removes what no longer applies.
    """
    if obs.service is None:
        return None
    ksvc = obs.service.get("status") or {}
    created, latest_ready = ksvc.get("latestCreatedRevisionName"), ksvc.get("latestReadyRevisionName")
    current = ksvc.get("observedGeneration") == (obs.service.get("metadata") or {}).get("generation")
    ready = any(c.get("type") == READY and c.get("status") == "True" for c in ksvc.get("conditions") or [])
    stable = obs.stable_revision
    if current and ready and created and created == latest_ready and (not obs.canary or stable is None):
        stable = latest_ready
    traffic = [{key: target[key] for key in ("revisionName", "percent", "tag", "url") if target.get(key) is not None}
               for target in ksvc.get("traffic") or []]
    canary = obs.canary and stable is not None and created is not None and created != stable
    return {
        "stableRevision": stable,
        "latestRevision": created,
        "canaryTrafficPercent": obs.canary_percent if obs.canary and stable is not None else None,
        "canaryReady": (latest_ready == created) if canary else None,
        "traffic": traffic or None,
        "split": ", ".join(f"{t['revisionName']} {t.get('percent', 0)}%" for t in traffic if "revisionName" in t) or None,
    }


def _prewarm(obs: Findings) -> dict[str, Any] | None:
    """The floor the Revisions get now, the windows warming or open, the next one, and any problem
    writing it; None without schedules once nothing is left to put back. All keys are present."""
    if obs.prewarm is None and obs.prewarm_problem is None:
        return None
    prewarm = obs.prewarm
    return {
        "minReplicas": prewarm.min_replicas if prewarm else obs.base_min_replicas,
        "windows": [w.as_status() for w in prewarm.active] if prewarm and prewarm.active else None,
        "next": prewarm.next.as_status() if prewarm and prewarm.next else None,
        "problem": obs.prewarm_problem,
    }


def needs_write(new: Mapping[str, Any], stored: Mapping[str, Any] | None) -> bool:
    """Whether the stored status differs from `new` in anything we own."""
    return normalized(new) != normalized(stored)


def condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition of `type_` in a status, if any."""
    for item in (status or {}).get("conditions") or []:
        if item.get("type") == type_:
            return item
    return None


def _spec_condition(obs: Findings) -> Condition:
    if obs.spec_errors:
        return Condition(SPEC_VALID, "False", REASON_INVALID_SPEC, "; ".join(obs.spec_errors))
    return Condition(SPEC_VALID, "True", "Valid")


def _features_condition(obs: Findings) -> Condition:
    if obs.spec_errors:
        return Condition(FEATURES_READY, "Unknown", "SpecNotValid", "the spec must be valid before it can be checked against Knative's features")
    if obs.blockers:
        return Condition(FEATURES_READY, "False", REASON_FEATURE_DISABLED, "; ".join(obs.blockers))
    if not obs.features_checked:
        return Condition(FEATURES_READY, "True", "NotChecked", "Knative's config-features/config-autoscaler ConfigMaps were not found; flags not checked")
    return Condition(FEATURES_READY, "True", "FeaturesEnabled")


def _service_condition(obs: Findings) -> Condition:
    if obs.not_owned:
        return Condition(SERVICE_READY, "False", REASON_NOT_OWNED, obs.not_owned)
    if obs.apply_error:
        return Condition(SERVICE_READY, "False", REASON_APPLY_FAILED, obs.apply_error)
    svc = obs.service
    if svc is None:
        if obs.spec_errors or obs.blockers:
            return Condition(SERVICE_READY, "False", "NotCreated", "the Knative Service is not created until the problems above are fixed")
        return Condition(SERVICE_READY, "Unknown", REASON_SERVICE_MISSING, "the Knative Service is being created")
    generation = (svc.get("metadata") or {}).get("generation")
    status = svc.get("status") or {}
    if status.get("observedGeneration") != generation:
        return Condition(SERVICE_READY, "Unknown", REASON_DEPLOYING, f"Knative has not yet observed generation {generation} of the Service")
    ksvc_ready = condition(status, READY)
    if ksvc_ready is None:
        return Condition(SERVICE_READY, "Unknown", REASON_DEPLOYING, "the Knative Service reports no Ready condition yet")
    if ksvc_ready.get("status") == "True":
        return Condition(SERVICE_READY, "True", "ServiceReady")
    state = "False" if ksvc_ready.get("status") == "False" else "Unknown"
    return Condition(SERVICE_READY, state, ksvc_ready.get("reason") or REASON_DEPLOYING, ksvc_ready.get("message") or "")


def _triggers_condition(obs: Findings) -> Condition:
    """True without triggers or when every PingSource/Trigger is Ready; False names the first failing one."""
    if obs.triggers_error is not None:
        return Condition(TRIGGERS_READY, "False", *obs.triggers_error)
    if not obs.triggers:
        if obs.spec_errors:
            return Condition(TRIGGERS_READY, "Unknown", "SpecNotValid", "the spec must be valid before its triggers are created")
        return Condition(TRIGGERS_READY, "True", REASON_NO_TRIGGERS)
    states = [_trigger_state(label, obj, blocked=bool(obs.spec_errors or obs.blockers or obs.not_owned)) for label, obj in obs.triggers]
    for wanted in ("False", "Unknown"):
        for state in states:
            if state.status == wanted:
                return state
    return Condition(TRIGGERS_READY, "True", REASON_TRIGGERS_READY)


def _trigger_state(label: str, obj: Mapping[str, Any] | None, *, blocked: bool) -> Condition:
    """One PingSource's or Trigger's readiness as Knative Eventing reports it in its status."""
    if obj is None:
        if blocked:
            return Condition(TRIGGERS_READY, "False", "NotCreated", f"{label} is not created until the problems above are fixed")
        return Condition(TRIGGERS_READY, "Unknown", REASON_EVENTING_NOT_READY, f"{label} is being created")
    generation = (obj.get("metadata") or {}).get("generation")
    status = obj.get("status") or {}
    ready = condition(status, READY)
    if ready is None or status.get("observedGeneration") != generation:
        return Condition(TRIGGERS_READY, "Unknown", REASON_EVENTING_NOT_READY, f"Knative Eventing has not reported on generation {generation} of {label} yet")
    if ready.get("status") == "True":
        return Condition(TRIGGERS_READY, "True", REASON_TRIGGERS_READY)
    state = "False" if ready.get("status") == "False" else "Unknown"
    reason = ready.get("reason") or (REASON_TRIGGER_NOT_READY if state == "False" else REASON_EVENTING_NOT_READY)
    detail = ready.get("message") or "not ready"
    return Condition(TRIGGERS_READY, state, reason, f"{label}: {detail}")


def _pods_condition(obs: Findings) -> Condition:
    if obs.unschedulable is None:
        return Condition(PODS_SCHEDULED, "True", "Scheduled")
    if not obs.needs_gpu:
        return Condition(PODS_SCHEDULED, "False", REASON_UNSCHEDULABLE, obs.unschedulable)
    message = obs.unschedulable
    if obs.acceptable_products:
        message += f"; GPU products tried (nvidia.com/gpu.product): {', '.join(obs.acceptable_products)}"
    return Condition(PODS_SCHEDULED, "False", REASON_WAITING_FOR_GPU, message)


def _ready_condition(spec: Condition, features: Condition, service: Condition, triggers: Condition, pods: Condition) -> Condition:
    for blocking in (spec, features):
        if blocking.status == "False":
            return Condition(READY, "False", blocking.reason, blocking.message)
    if service.status == "True" and triggers.status == "True":
        return Condition(READY, "True", REASON_READY)
    if pods.status == "False" and service.status != "True":
        return Condition(READY, service.status, pods.reason, pods.message)
    for part in (service, triggers):
        if part.status == "False":
            return Condition(READY, "False", part.reason, part.message)
    first = service if service.status != "True" else triggers
    return Condition(READY, "Unknown", first.reason, first.message)


def _with_time(cond: Condition, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    before = condition(previous, cond.type)
    unchanged = before is not None and before.get("status") == cond.status and before.get("lastTransitionTime")
    item: dict[str, Any] = {"type": cond.type, "status": cond.status, "reason": cond.reason}
    if cond.message:
        item["message"] = cond.message
    item["lastTransitionTime"] = before["lastTransitionTime"] if unchanged and before else now
    return item


def summary(status: Mapping[str, Any]) -> tuple[str, str]:
    """(Ready status, reason): what `kubectl get aif` shows and what metrics count."""
    ready = condition(status, READY) or {}
    return str(ready.get("status", "Unknown")), str(status.get("reason") or ready.get("reason") or "")


def conditions_by_type(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Conditions keyed by type; only the tests use it (the operator looks one up with `condition`)."""
    items: Sequence[Mapping[str, Any]] = status.get("conditions") or []
    return {str(c.get("type")): c for c in items}
