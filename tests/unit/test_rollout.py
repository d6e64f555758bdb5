"""Canary rollout and rollback (spec.rollout): the traffic the operator asks Knative for, and the
rolled-out revision the status keeps, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from aifunction_operator.controller.status import Findings, build_status, needs_write, stable_revision
from aifunction_operator.render.service import canary_traffic
from aifunction_operator.spec.model import Rollout

ALL_LATEST = [{"latestRevision": True, "percent": 100}]
TRAFFIC = [
    ("no rollout: Knative's default, stated", Rollout(), "fn-00001", ALL_LATEST),
    ("100 promotes", Rollout(canary_traffic_percent=100), "fn-00001", ALL_LATEST),
    ("a canary before anything was rolled out: all to the first revision", Rollout(canary_traffic_percent=20), None, ALL_LATEST),
    ("canary 20", Rollout(canary_traffic_percent=20), "fn-00001",
     [{"revisionName": "fn-00001", "percent": 80}, {"latestRevision": True, "percent": 20}]),
    ("0 rolls back, the new revision kept at 0", Rollout(canary_traffic_percent=0), "fn-00001",
     [{"revisionName": "fn-00001", "percent": 100}, {"latestRevision": True, "percent": 0}]),
    ("tags give each revision a URL", Rollout(canary_traffic_percent=10, tags=True), "fn-00001",
     [{"revisionName": "fn-00001", "percent": 90, "tag": "stable"}, {"latestRevision": True, "percent": 10, "tag": "canary"}]),
]


@pytest.mark.parametrize(("case", "rollout", "stable", "expected"), TRAFFIC, ids=[c[0] for c in TRAFFIC])
def test_traffic(case: str, rollout: Rollout, stable: str | None, expected: list[dict[str, Any]]) -> None:
    assert canary_traffic(rollout, stable) == expected


def service(created: str, ready: str, *, is_ready: bool = True, current: bool = True, traffic: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Knative Service as its controller reports it."""
    return {"metadata": {"generation": 2}, "status": {
        "observedGeneration": 2 if current else 1, "latestCreatedRevisionName": created, "latestReadyRevisionName": ready,
        "conditions": [{"type": "Ready", "status": "True" if is_ready else "False"}],
        "traffic": traffic if traffic is not None else [{"revisionName": ready, "percent": 100, "latestRevision": True}]}}


SPLIT = [{"revisionName": "fn-00001", "percent": 80, "tag": "stable", "url": "http://stable-fn.apps.example.com"},
         {"revisionName": "fn-00002", "percent": 20, "latestRevision": True}]
ROLLED_OUT = [
    # (case, canary percent or None, stored stable, service, expected rollout fields)
    ("first deployment Ready: rolled out", None, None, service("fn-00001", "fn-00001"),
     {"stableRevision": "fn-00001", "latestRevision": "fn-00001", "split": "fn-00001 100%"}),
    ("a first deployment is rolled out even with a canary asked for", 20, None, service("fn-00001", "fn-00001"),
     {"stableRevision": "fn-00001", "canaryTrafficPercent": 20}),
    ("not Ready yet: nothing rolled out", None, None, service("fn-00001", None, is_ready=False), {"latestRevision": "fn-00001"}),
    ("a status of an older generation moves nothing", None, "fn-00001", service("fn-00002", "fn-00002", current=False),
     {"stableRevision": "fn-00001"}),
    ("a canary holds the rolled-out revision; the split and the canary's readiness show", 20, "fn-00001",
     service("fn-00002", "fn-00002", traffic=SPLIT),
     {"stableRevision": "fn-00001", "latestRevision": "fn-00002", "canaryTrafficPercent": 20, "canaryReady": True,
      "split": "fn-00001 80%, fn-00002 20%", "traffic": [SPLIT[0], {"revisionName": "fn-00002", "percent": 20}]}),
    ("a canary that fails never becomes ready: the status says so", 20, "fn-00001", service("fn-00002", "fn-00001", is_ready=False),
     {"stableRevision": "fn-00001", "canaryReady": False}),
    ("rollback: 0 keeps the rolled-out revision", 0, "fn-00001", service("fn-00002", "fn-00002"),
     {"stableRevision": "fn-00001", "canaryTrafficPercent": 0, "canaryReady": True}),
    ("promotion: the latest revision becomes the rolled-out one once Ready", None, "fn-00001", service("fn-00002", "fn-00002"),
     {"stableRevision": "fn-00002", "canaryTrafficPercent": None, "canaryReady": None}),
]


@pytest.mark.parametrize(("case", "percent", "stable", "ksvc", "expected"), ROLLED_OUT, ids=[c[0] for c in ROLLED_OUT])
def test_rolled_out_revision(case: str, percent: int | None, stable: str | None, ksvc: dict[str, Any], expected: dict[str, Any]) -> None:
    rollout = Rollout(canary_traffic_percent=percent)
    status = build_status(Findings(generation=1, service=ksvc, canary=rollout.canary, canary_percent=percent, stable_revision=stable), {}, "t")
    for key, value in expected.items():
        assert status["rollout"][key] == value, (key, status["rollout"])
    assert stable_revision(status) == status["rollout"]["stableRevision"] or status["rollout"]["stableRevision"] is None


def test_a_stored_rollout_without_its_unset_keys_is_not_rewritten() -> None:
    """Unset keys are sent as null (a merge patch removes what no longer applies) but never stored."""
    status = build_status(Findings(generation=1, service=service("fn-00001", "fn-00001")), {}, "t")
    stored = {**status, "rollout": {k: v for k, v in status["rollout"].items() if v is not None}}
    assert not needs_write(status, stored)
    assert needs_write(status, {**stored, "rollout": {**stored["rollout"], "stableRevision": "fn-00000"}})


def test_before_the_rollout_status_existed_the_latest_ready_revision_is_the_rolled_out_one() -> None:
    assert stable_revision({"latestReadyRevision": "fn-00003"}) == "fn-00003"
    assert stable_revision({"latestReadyRevision": "fn-00003", "rollout": {"stableRevision": "fn-00002"}}) == "fn-00002"
    assert stable_revision(None) is None
