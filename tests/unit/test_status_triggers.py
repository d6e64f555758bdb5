"""TriggersReady: PingSources/Triggers as Knative Eventing reports them, and how Ready aggregates it."""

from __future__ import annotations

from typing import Any

import pytest

from aifunction_operator.controller.status import Findings, build_status, conditions_by_type

T0 = "2026-01-01T00:00:00Z"


def ksvc(ready: str = "True") -> dict[str, Any]:
    return {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": ready}]}}


def source(ready: str | None = "True", generation: int = 1, observed: int | None = 1, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        cond = {"type": "Ready", "status": ready}
        cond.update({k: v for k, v in (("reason", reason), ("message", message)) if v})
        status["conditions"] = [cond]
    return {"metadata": {"generation": generation}, "status": status}


PING = "PingSource fn-nightly"
TRIGGER = "Trigger fn-uploads"


@pytest.mark.parametrize(
    ("obs", "triggers", "ready"),
    [
        # No triggers: True, and Ready follows the Service alone.
        (Findings(1, service=ksvc()), ("True", "NoTriggers"), ("True", "Ready")),
        # Every PingSource/Trigger Ready: True.
        (Findings(1, service=ksvc(), triggers=((PING, source()), (TRIGGER, source()))), ("True", "TriggersReady"), ("True", "Ready")),
        # Eventing has not reported yet (no status, an older generation, Ready Unknown): Unknown.
        (Findings(1, service=ksvc(), triggers=((PING, source(ready=None, observed=None)),)), ("Unknown", "EventingNotReady"), ("Unknown", "EventingNotReady")),
        (Findings(1, service=ksvc(), triggers=((PING, source(generation=2, observed=1)),)), ("Unknown", "EventingNotReady"), ("Unknown", "EventingNotReady")),
        (Findings(1, service=ksvc(), triggers=((PING, None),)), ("Unknown", "EventingNotReady"), ("Unknown", "EventingNotReady")),
        (Findings(1, service=ksvc(), triggers=((TRIGGER, source(ready="Unknown", reason="BrokerNotReady")),)), ("Unknown", "BrokerNotReady"), ("Unknown", "BrokerNotReady")),
        # A child Ready False: False with its reason, even when another is fine; Ready False.
        (Findings(1, service=ksvc(), triggers=((PING, source()), (TRIGGER, source(ready="False", reason="BrokerDoesNotExist", message="Broker images does not exist")))), ("False", "BrokerDoesNotExist"), ("False", "BrokerDoesNotExist")),
        (Findings(1, service=ksvc(), triggers=((PING, source(ready="Unknown")), (TRIGGER, source(ready="False")))), ("False", "TriggerNotReady"), ("False", "TriggerNotReady")),
        # Eventing's CRDs missing, or a child rejected: False with our reason.
        (Findings(1, service=ksvc(), triggers_error=("EventingNotInstalled", "install Knative Eventing")), ("False", "EventingNotInstalled"), ("False", "EventingNotInstalled")),
        (Findings(1, service=ksvc(), triggers_error=("ApplyFailed", "PingSource fn-nightly: denied")), ("False", "ApplyFailed"), ("False", "ApplyFailed")),
        # The Service's own state comes first while it is not ready.
        (Findings(1, service=None, triggers=((PING, source(ready="False")),)), ("False", "TriggerNotReady"), ("False", "TriggerNotReady")),
        (Findings(1, service=ksvc(ready="Unknown"), triggers=((PING, source(ready=None, observed=None)),)), ("Unknown", "EventingNotReady"), ("Unknown", "Deploying")),
        (Findings(1, service=ksvc(ready="False"), triggers=((PING, source(ready="False")),)), ("False", "TriggerNotReady"), ("False", "Deploying")),
        # Blocked by a disabled Knative feature: children are not created.
        (Findings(1, blockers=("needs x",), triggers=((PING, None),)), ("False", "NotCreated"), ("False", "KnativeFeatureDisabled")),
        # An invalid spec: its triggers are not known.
        (Findings(1, spec_errors=("spec.triggers.schedules[0].cron: bad",)), ("Unknown", "SpecNotValid"), ("False", "InvalidSpec")),
    ],
)
def test_triggers_ready_table(obs: Findings, triggers: tuple[str, str], ready: tuple[str, str]) -> None:
    status = build_status(obs, None, T0)
    found = conditions_by_type(status)
    assert (found["TriggersReady"]["status"], found["TriggersReady"]["reason"]) == triggers
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ready
    assert status["reason"] == ready[1], "the printer column shows Ready's reason"


def test_a_failing_child_is_named_in_the_message() -> None:
    obs = Findings(1, service=ksvc(), triggers=((TRIGGER, source(ready="False", reason="BrokerDoesNotExist", message="Broker images does not exist")),))
    found = conditions_by_type(build_status(obs, None, T0))
    assert found["TriggersReady"]["message"] == "Trigger fn-uploads: Broker images does not exist"
    assert found["Ready"]["message"] == found["TriggersReady"]["message"]


def test_condition_order_puts_triggers_after_the_service() -> None:
    status = build_status(Findings(1, service=ksvc()), None, T0)
    assert [c["type"] for c in status["conditions"]] == ["Ready", "SpecValid", "KnativeFeaturesReady", "ServiceReady", "TriggersReady", "PodsScheduled"]
