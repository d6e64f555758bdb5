"""One reconcile pass for one function, straight down: observe, decide, act, report.

    wanted   = want(body, config, knative, now)   decide.py   pure: parse, render, pre-flight, pre-warm floor
    observed = observe(client, wanted, cached)    observe.py  reads: Service, children, names
    plan     = decide(wanted, observed)           decide.py   pure: what to apply, prune, nudge, min-scale
    acted    = act(client, plan, ...)             act.py      writes, in the plan's order
    outcome  = report(client, body, ...)          here        status (pure, status.py), its write, Events

Synchronous and free of kopf; state.py runs it in a worker thread. What it needs from outside
(Knative's settings, what the watches showed) is passed in as plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..render.config import OperatorConfig
from ..render.manifest import Manifest
from .act import Acted, act
from .children import EVENTING_KINDS, ChildKey, child_key, is_ours, label, not_served_message
from .decide import Observed, Plan, Wanted, decide, unmeasured_revisions, want
from .kube_client import AIFUNCTIONS, KubeClient
from .observe import Cached, observe
from .preflight import KnativeSettings
from .status import REASON_APPLY_FAILED, REASON_EVENTING_NOT_INSTALLED, REASON_NOT_OWNED, SPEC_VALID, Findings, build_status, condition, needs_write

__all__ = ["Cached", "KnativeSettings", "Outcome", "reconcile"]


@dataclass
class Outcome:
    """What a pass did, for state.py, metrics and tests."""

    status: Manifest
    status_written: bool = False
    applied: bool = False  # the Service was applied
    service: Manifest | None = None  # the function's Service as it now is (None: none, or not ours)
    event: tuple[str, str] | None = None  # (reason, message) posted as a Warning
    errors: tuple[str, ...] = ()  # the spec's problems
    children: dict[ChildKey, Manifest] | None = None  # ConfigMaps, PingSources, Triggers as now live (None: not looked at)
    children_applied: int = 0
    children_deleted: int = 0
    gone: bool = False  # the function no longer exists (a cached copy outlived it): nothing was written
    wake_at: datetime | None = None  # when a pre-warm window opens or closes next: reconcile again then
    min_scale_set: tuple[str, ...] = ()  # "revision=value" for each Revision whose min-scale was written

    @property
    def result(self) -> str:
        """A short label for metrics: the Ready reason."""
        return str(self.status.get("reason") or "Unknown")


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> str:
    """Now, as Kubernetes writes times."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


def reconcile(client: KubeClient, body: Mapping[str, Any], config: OperatorConfig, knative: KnativeSettings,
              cached: Cached | None = None, *, now: str | None = None) -> Outcome:
    """Bring the function's Knative Service and other children to their desired state and write the status if it changed.

    A Service or child the watches showed (`cached`) that already has every field we render is
    not applied again. Transient API errors propagate as ApiError.
    """
    cached = cached or Cached(reconciled_before=bool(body.get("status")))
    now = now or utcnow()
    wanted = want(body, config, knative, datetime.strptime(now, TIME_FORMAT).replace(tzinfo=UTC))
    observed = observe(client, wanted, cached)
    if observed.gone:
        return Outcome(status={}, gone=True)
    plan = decide(wanted, observed)
    acted = act(client, plan, observed.children)
    return report(client, body, wanted, observed, plan, acted, now)


def report(client: KubeClient, body: Mapping[str, Any], wanted: Wanted, observed: Observed, plan: Plan, acted: Acted, now: str) -> Outcome:
    """Compute the status from the pass, write it if it changed, and post a Warning for a newly invalid spec."""
    service = acted.service if acted.service is not None else observed.service
    if service is not None and not is_ours(service, wanted.uid):
        service = None  # never mirror someone else's Service
    findings = Findings(
        generation=wanted.generation,
        spec_errors=wanted.spec_errors,
        blockers=wanted.blockers,
        features_checked=wanted.features_checked,
        service=service,
        apply_error=acted.service_error or ("; ".join(acted.config_map_errors + _lookup_errors(observed, "ConfigMap")) or None),
        not_owned="; ".join(plan.not_owned) or None,
        unschedulable=observed.unschedulable,
        needs_gpu=wanted.needs_gpu,
        acceptable_products=wanted.acceptable_products,
        gpu_product=observed.gpu_products[0] if observed.gpu_products else None,
        canary=wanted.rollout.canary,
        canary_percent=wanted.rollout.canary_traffic_percent,
        stable_revision=wanted.stable_revision,
        triggers=tuple((label(obj), acted.children.get(child_key(obj))) for obj in wanted.eventing),
        triggers_error=_triggers_error(observed, plan, acted),
        prewarm=wanted.prewarm,
        base_min_replicas=wanted.base_min_replicas,
        prewarm_problem="; ".join(filter(None, [observed.revisions_error, *acted.min_scale_errors,
                                                _unmeasured_message(unmeasured_revisions(wanted, service, observed.revisions))])) or None,
    )
    previous = body.get("status") or {}
    outcome = Outcome(
        status=build_status(findings, previous, now), applied=acted.service is not None, service=service,
        errors=wanted.spec_errors, children=acted.children if observed.children is not None else None,
        children_applied=acted.children_applied, children_deleted=acted.children_deleted,
        wake_at=wanted.prewarm.changes_at if wanted.prewarm else None, min_scale_set=tuple(acted.min_scale_set))
    if needs_write(outcome.status, previous):
        client.patch_status(AIFUNCTIONS, wanted.namespace, wanted.name, outcome.status)
        outcome.status_written = True
    outcome.event = invalid_spec_event(outcome.status, previous)
    if outcome.event:
        client.post_event(body, type_="Warning", reason=outcome.event[0], message=outcome.event[1])
    return outcome


def _unmeasured_message(names: tuple[str, ...]) -> str | None:
    if not names:
        return None
    return (f"Revision {', '.join(names)} has not run yet (created with initialReplicas 0): Knative's autoscaler has no "
            "metrics for it and ignores min-scale until its first request, which starts this window's replicas")


def _lookup_errors(observed: Observed, *kinds: str) -> list[str]:
    return [message for (kind, _), message in sorted(observed.lookup_errors.items()) if kind in kinds]


def _triggers_error(observed: Observed, plan: Plan, acted: Acted) -> tuple[str, str] | None:
    """Why the PingSources/Triggers are not all applied: (reason, message), or None."""
    not_served = list(dict.fromkeys([*observed.not_served, *acted.not_served]))
    errors = acted.eventing_errors + _lookup_errors(observed, *EVENTING_KINDS)
    if plan.eventing_not_owned:
        return (REASON_NOT_OWNED, "; ".join(plan.eventing_not_owned))
    if not_served:
        return (REASON_EVENTING_NOT_INSTALLED, not_served_message(not_served))
    if errors:
        return (REASON_APPLY_FAILED, "; ".join(errors))
    return None


def invalid_spec_event(status: Mapping[str, Any], previous: Mapping[str, Any]) -> tuple[str, str] | None:
    """A Warning event when the spec newly became invalid or its problems changed."""
    now_valid = condition(status, SPEC_VALID) or {}
    before = condition(previous, SPEC_VALID) or {}
    if now_valid.get("status") != "False":
        return None
    if before.get("status") == "False" and before.get("message") == now_valid.get("message"):
        return None
    return ("InvalidSpec", str(now_valid.get("message", "")))
