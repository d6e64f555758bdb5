"""One reconcile pass for one function: spec -> render -> pre-flight -> apply -> status.

Synchronous and free of kopf; the handlers run it in a worker thread. What it needs from
outside (Knative's ConfigMaps, pod scheduling) is passed in as plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .apply import AIFUNCTIONS, KNATIVE_SERVICES, ApiError, Kube
from .config import OperatorConfig
from .naming import FIELD_MANAGER
from .preflight import find_blockers
from .render import render
from .spec import AIFunction, InvalidSpec, parse_function
from .status import SPEC_VALID, Observation, build_status, condition, needs_write

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

    @property
    def result(self) -> str:
        """A short label for metrics: the Ready reason."""
        return str(self.status.get("reason") or "Unknown")


def utcnow() -> str:
    """Now, as Kubernetes writes times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile(
    kube: Kube,
    body: Mapping[str, Any],
    config: OperatorConfig,
    knative: KnativeSettings,
    *,
    unschedulable: str | None = None,
    live_service: Manifest | None = None,
    now: str | None = None,
) -> Outcome:
    """Bring the function's Knative Service to its desired state and write the status if it changed.

    `live_service` is the Service as the watch last showed it (None: not seen, or deleted):
    when it already has every field we render, the apply is skipped. Transient API errors
    propagate as ApiError.
    """
    meta = body.get("metadata") or {}
    fn, errors = _parse(body)
    observation: dict[str, Any] = {"generation": meta.get("generation"), "spec_errors": tuple(errors), "unschedulable": unschedulable}
    outcome = Outcome(status={})
    desired: Manifest | None = None
    if fn is not None:
        try:
            desired = render(fn, config)[0]
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
            if live_service is not None and not is_ours(live_service, meta.get("uid")):
                observation["not_owned"] = f"Knative Service {meta.get('name')} already exists and was not created by this AIFunction; delete or rename one of them"
            elif live_service is not None and covers(live_service, desired):
                outcome.service = live_service
            else:
                outcome.service, observation["apply_error"] = _apply(kube, desired)
                outcome.applied = observation["apply_error"] is None
    if outcome.service is None and not outcome.applied:
        outcome.service = live_service if live_service is not None else kube.get(KNATIVE_SERVICES, meta.get("namespace"), meta.get("name", ""))
    if outcome.service is not None and not is_ours(outcome.service, meta.get("uid")):
        outcome.service = None  # never mirror someone else's Service
    observation["service"] = outcome.service
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


def _parse(body: Mapping[str, Any]) -> tuple[AIFunction | None, list[str]]:
    try:
        return parse_function(body), []
    except InvalidSpec as exc:
        return None, [str(e) for e in exc.errors]


def _apply(kube: Kube, desired: Manifest) -> tuple[Manifest | None, str | None]:
    try:
        return kube.apply(desired), None
    except ApiError as exc:
        if exc.transient:
            raise
        return None, f"the API server rejected the Knative Service: {exc.message}"


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
    meta = service.get("metadata") or {}
    if any(ref.get("controller") and ref.get("uid") == uid for ref in meta.get("ownerReferences") or []):
        return True
    return any(entry.get("manager") == FIELD_MANAGER for entry in meta.get("managedFields") or [])


def covers(live: Any, desired: Any) -> bool:
    """Whether `live` holds every field of `desired` with the same value (servers may add fields)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(key in live and covers(live[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(covers(a, b) for a, b in zip(live, desired, strict=True))
    return bool(live == desired)
