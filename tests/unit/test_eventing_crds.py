"""How the operator reads a watch event of one of Knative Eventing's CRDs (handlers.crd_state)."""

from __future__ import annotations

from typing import Any

import pytest

from aifunction_operator.controller.wiring import EVENTING_CRDS, crd_state

ESTABLISHED = {"status": {"conditions": [{"type": "NamesAccepted", "status": "True"},
                                         {"type": "Established", "status": "True"}]}}


@pytest.mark.parametrize(("event_type", "crd", "expected"), [
    ("ADDED", {"status": {"conditions": [{"type": "NamesAccepted", "status": "True"}]}}, "pending"),
    ("ADDED", {}, "pending"),
    ("MODIFIED", {"status": {"conditions": [{"type": "Established", "status": "False"}]}}, "pending"),
    ("MODIFIED", ESTABLISHED, "established"),
    (None, ESTABLISHED, "established"),  # kopf's initial listing
    ("MODIFIED", {"metadata": {"deletionTimestamp": "2026-11-29T19:00:00Z"}, **ESTABLISHED}, "terminating"),
    ("DELETED", ESTABLISHED, "gone"),
])
def test_crd_state(event_type: str | None, crd: dict[str, Any], expected: str) -> None:
    assert crd_state(event_type, crd) == expected


def test_the_crds_followed_are_those_of_the_children() -> None:
    assert EVENTING_CRDS == {"pingsources.sources.knative.dev", "triggers.eventing.knative.dev"}
