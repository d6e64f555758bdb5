"""Which children to apply and which to prune (pure decisions of children.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aifunction_operator.controller.children import child_key, controlled_by, not_served_message, selector, to_apply, to_prune
from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.render import render
from aifunction_operator.render.metadata import child_name
from aifunction_operator.spec import parse_function

CASE = Path(__file__).resolve().parent / "cases" / "handler-inline-triggers.yaml"
UID = "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
CM, NIGHTLY, UPLOADS = (child_name("digits-lambda", part) for part in ("handler", "nightly", "uploads"))


def children() -> list[dict[str, Any]]:
    return render(parse_function(yaml.safe_load(CASE.read_text())), OperatorConfig())[1:]


def live_copy(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    """What the server returns: our fields plus its own."""
    meta = {**obj["metadata"], "uid": "child-uid", "resourceVersion": "7", "generation": 1, "managedFields": [{"manager": "aifn-operator"}]}
    return {**obj, "metadata": meta, "status": status}


def test_the_handler_case_has_a_configmap_a_pingsource_and_a_trigger() -> None:
    assert [child_key(c) for c in children()] == [("ConfigMap", CM), ("PingSource", NIGHTLY), ("Trigger", UPLOADS)]
    assert all(controlled_by(c, UID) for c in children())


def test_missing_children_are_applied_and_present_ones_are_not() -> None:
    wanted = children()
    assert to_apply(wanted, {}) == wanted
    live = {child_key(c): live_copy(c, observedGeneration=1) for c in wanted}
    assert to_apply(wanted, live) == []


def test_drift_in_a_rendered_field_is_applied_again() -> None:
    wanted = children()
    live = {child_key(c): live_copy(c) for c in wanted}
    edited = live[("PingSource", NIGHTLY)]
    live[("PingSource", NIGHTLY)] = {**edited, "spec": {**edited["spec"], "schedule": "* * * * *"}}
    assert [child_key(c) for c in to_apply(wanted, live)] == [("PingSource", NIGHTLY)]


def test_unwanted_children_we_control_are_pruned_others_left_alone() -> None:
    wanted = children()
    live = {child_key(c): live_copy(c) for c in wanted}
    removed = live_copy({**wanted[1], "metadata": {**wanted[1]["metadata"], "name": "digits-lambda-hourly"}})
    foreign = live_copy({**wanted[2], "metadata": {**wanted[2]["metadata"], "name": "digits-lambda-old", "ownerReferences": [{"controller": True, "uid": "another-function"}]}})
    live[child_key(removed)] = removed
    live[child_key(foreign)] = foreign
    assert [child_key(c) for c in to_prune(wanted, live, UID)] == [("PingSource", "digits-lambda-hourly")]
    assert to_prune([], live, None) == [], "without a uid nothing is ours to delete"


def test_selector_and_install_hint() -> None:
    assert selector("fn") == "aifn.dev/function=fn,app.kubernetes.io/managed-by=aifn-operator"
    message = not_served_message(["PingSource", "Trigger"])
    assert "pingsources.sources.knative.dev" in message and "triggers.eventing.knative.dev" in message and "Knative Eventing" in message


def test_a_pass_whose_view_predates_a_watch_event_is_not_cached() -> None:
    """A deletion seen by the watch while a pass ran must not be undone by that pass's older view."""
    from aifunction_operator.controller.observability import Metrics
    from aifunction_operator.controller.reconcile import Outcome
    from aifunction_operator.controller.state import OperatorState

    state = OperatorState(None, OperatorConfig(), Metrics(), workers=1)  # type: ignore[arg-type]  # no API calls here
    try:
        key = ("apps", "digits-lambda")
        wanted = {child_key(c): live_copy(c) for c in children()}
        quiet = state.child_events[key]
        state._merge_children(key, Outcome(status={}, children=dict(wanted)), quiet)
        assert key in state.children_known and set(state.children[key]) == set(wanted)

        before = state.child_events[key]
        state.observe_child(key, ("Trigger", UPLOADS), None)  # deleted during the next pass
        state._merge_children(key, Outcome(status={}, children=dict(wanted)), before)
        assert key not in state.children_known, "the next pass must list the children again"
        assert ("Trigger", UPLOADS) not in state.children[key]
    finally:
        state.stop()


def test_a_service_deleted_while_a_pass_applied_it_stays_deleted_in_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rule for the Knative Service: the watch's deletion wins over the pass's apply result.

    The pass's API work is replaced (a deletion landing exactly inside a pass cannot be timed for
    real in a unit test; tests/integration/test_operator_triggers.py races it for children)."""
    import asyncio

    import aifunction_operator.controller.state as module
    from aifunction_operator.controller.observability import Metrics
    from aifunction_operator.controller.reconcile import Outcome
    from aifunction_operator.controller.state import OperatorState

    key = ("apps", "fn")
    body = {"metadata": {"namespace": "apps", "name": "fn", "resourceVersion": "1"}}
    state = OperatorState(None, OperatorConfig(), Metrics(), workers=1)  # type: ignore[arg-type]  # no API calls here
    applied = {"metadata": {"name": "fn", "resourceVersion": "5"}}

    def pass_during_which_the_service_is_deleted(*_: Any, **__: Any) -> Outcome:
        state.observe_service(key, None)  # the watch reports the deletion while the pass runs
        return Outcome(status={}, applied=True, service=applied)

    try:
        monkeypatch.setattr(module, "reconcile", pass_during_which_the_service_is_deleted)
        asyncio.run(state.reconcile(key, body))
        assert key not in state.services, "the next pass must see the Service as missing and recreate it"
        monkeypatch.setattr(module, "reconcile", lambda *_, **__: Outcome(status={}, applied=True, service=applied))
        asyncio.run(state.reconcile(key, body))
        assert state.services[key] == applied, "without a concurrent event the applied Service is cached"
    finally:
        state.stop()
