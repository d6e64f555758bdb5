"""Status: conditions from what a reconcile observed; lastTransitionTime kept when unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from aifunction_operator.controller.status import Findings, build_status, conditions_by_type, needs_write, summary

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def ksvc(generation: int = 1, observed: int | None = 1, ready: str | None = "True", reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"url": "http://fn.ns.example.com", "address": {"url": "http://fn.ns.svc.cluster.local"}, "latestReadyRevisionName": "fn-00001"}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        cond = {"type": "Ready", "status": ready}
        cond.update({k: v for k, v in (("reason", reason), ("message", message)) if v})
        status["conditions"] = [cond, {"type": "RoutesReady", "status": ready}]
    return {"metadata": {"generation": generation}, "status": status}


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {t: (c["status"], c["reason"]) for t, c in conditions_by_type(status).items()}


@pytest.mark.parametrize(
    ("obs", "ready", "reason", "service"),
    [
        (Findings(3, service=ksvc()), "True", "Ready", ("True", "ServiceReady")),
        (Findings(3, service=None), "Unknown", "ServiceMissing", ("Unknown", "ServiceMissing")),
        (Findings(3, service=ksvc(generation=2, observed=1)), "Unknown", "Deploying", ("Unknown", "Deploying")),
        (Findings(3, service=ksvc(observed=None, ready=None)), "Unknown", "Deploying", ("Unknown", "Deploying")),
        (Findings(3, service=ksvc(ready=None)), "Unknown", "Deploying", ("Unknown", "Deploying")),
        (Findings(3, service=ksvc(ready="False", reason="RevisionFailed", message="exit 1")), "False", "RevisionFailed", ("False", "RevisionFailed")),
        (Findings(3, service=ksvc(ready="Unknown", reason="TrafficNotMigrated")), "Unknown", "TrafficNotMigrated", ("Unknown", "TrafficNotMigrated")),
        (Findings(3, spec_errors=("spec.model.repository: bad",)), "False", "InvalidSpec", ("False", "NotCreated")),
        (Findings(3, blockers=("needs x",)), "False", "KnativeFeatureDisabled", ("False", "NotCreated")),
        (Findings(3, blockers=("needs x",), service=ksvc()), "False", "KnativeFeatureDisabled", ("True", "ServiceReady")),
        (Findings(3, apply_error="denied"), "False", "ApplyFailed", ("False", "ApplyFailed")),
        (Findings(3, not_owned="taken"), "False", "NotOwned", ("False", "NotOwned")),
        (Findings(3, service=None, unschedulable="0/3 nodes: Insufficient nvidia.com/gpu", needs_gpu=True), "Unknown", "WaitingForGPUNode", ("Unknown", "ServiceMissing")),
        (Findings(3, service=ksvc(generation=2, observed=2, ready="Unknown"), unschedulable="no fit", needs_gpu=False), "Unknown", "Unschedulable", ("Unknown", "Deploying")),
    ],
)
def test_ready_table(obs: Findings, ready: str, reason: str, service: tuple[str, str]) -> None:
    status = build_status(obs, None, T0)
    assert conds(status)["Ready"] == (ready, reason)
    assert conds(status)["ServiceReady"] == service
    assert status["reason"] == reason
    assert status["observedGeneration"] == 3


def test_ready_service_mirrors_url_address_and_revision() -> None:
    status = build_status(Findings(1, service=ksvc()), None, T0)
    assert (status["url"], status["address"], status["latestReadyRevision"]) == ("http://fn.ns.example.com", "http://fn.ns.svc.cluster.local", "fn-00001")
    assert summary(status) == ("True", "Ready")


def test_without_a_service_urls_are_cleared() -> None:
    status = build_status(Findings(1, service=None), None, T0)
    assert status["url"] is None and status["address"] is None and status["latestReadyRevision"] is None


def test_ready_service_with_a_pending_pod_stays_ready_but_shows_the_wait() -> None:
    status = build_status(Findings(1, service=ksvc(), unschedulable="Insufficient nvidia.com/gpu", needs_gpu=True), None, T0)
    assert conds(status)["Ready"] == ("True", "Ready")
    assert conds(status)["PodsScheduled"] == ("False", "WaitingForGPUNode")
    assert conditions_by_type(status)["PodsScheduled"]["message"] == "Insufficient nvidia.com/gpu"
    assert status["reason"] == "WaitingForGPUNode"


def test_invalid_spec_message_names_every_field() -> None:
    status = build_status(Findings(2, spec_errors=("spec.a: x", "spec.b: y")), None, T0)
    assert conditions_by_type(status)["Ready"]["message"] == "spec.a: x; spec.b: y"
    assert conds(status)["KnativeFeaturesReady"][0] == "Unknown"


def test_unchecked_features_do_not_block() -> None:
    status = build_status(Findings(1, features_checked=False, service=ksvc()), None, T0)
    assert conds(status)["KnativeFeaturesReady"] == ("True", "NotChecked")
    assert conds(status)["Ready"] == ("True", "Ready")


def test_last_transition_time_is_kept_while_status_is_unchanged() -> None:
    first = build_status(Findings(1, service=ksvc(generation=1, observed=None, ready=None)), None, T0)
    again = build_status(Findings(1, service=ksvc(generation=1, observed=1, ready="Unknown", reason="TrafficNotMigrated")), first, T1)
    assert conditions_by_type(again)["Ready"]["lastTransitionTime"] == T0  # Unknown -> Unknown, new reason
    assert conditions_by_type(again)["Ready"]["reason"] == "TrafficNotMigrated"
    ready = build_status(Findings(1, service=ksvc()), again, T1)
    assert conditions_by_type(ready)["Ready"]["lastTransitionTime"] == T1  # flipped to True
    assert conditions_by_type(ready)["SpecValid"]["lastTransitionTime"] == T0  # never changed


def test_identical_observation_needs_no_write() -> None:
    first = build_status(Findings(1, service=ksvc()), None, T0)
    second = build_status(Findings(1, service=ksvc()), first, T1)
    assert not needs_write(second, first)
    assert needs_write(build_status(Findings(2, service=ksvc()), first, T1), first)
    assert needs_write(first, None)


def test_stored_status_missing_keys_compare_as_none() -> None:
    status = build_status(Findings(1, service=None), None, T0)
    stored = {k: v for k, v in status.items() if v is not None}
    assert not needs_write(status, stored)
