"""Knative Eventing objects for a function's schedules (PingSource) and events (Trigger) (pure)."""

from __future__ import annotations

from typing import Any

from ..constants import KNATIVE_SERVING_API
from ..spec import AIFunction
from .metadata import child_metadata, child_name

PING_SOURCE_API = "sources.knative.dev/v1"
TRIGGER_API = "eventing.knative.dev/v1"


def _sink(fn: AIFunction) -> dict[str, Any]:
    return {"ref": {"apiVersion": KNATIVE_SERVING_API, "kind": "Service", "name": fn.name}}


def render_ping_sources(fn: AIFunction) -> list[dict[str, Any]]:
    """One PingSource per schedule, named <function>-<schedule>-<hash> (`child_name`), sinking into the function's Service."""
    objects = []
    for schedule in fn.spec.triggers.schedules:
        spec: dict[str, Any] = {"schedule": schedule.cron}
        if schedule.timezone:
            spec["timezone"] = schedule.timezone
        spec["contentType"] = schedule.content_type
        if schedule.data is not None:
            spec["data"] = schedule.data
        spec["sink"] = _sink(fn)
        objects.append({"apiVersion": PING_SOURCE_API, "kind": "PingSource", "metadata": child_metadata(fn, child_name(fn.name, schedule.name)), "spec": spec})
    return objects


def render_triggers(fn: AIFunction) -> list[dict[str, Any]]:
    """One Trigger per event subscription, named <function>-<event>-<hash> (`child_name`), subscribing the function's Service."""
    objects = []
    for event in fn.spec.triggers.events:
        spec: dict[str, Any] = {"broker": event.broker}
        if event.filter.attributes:
            spec["filter"] = {"attributes": dict(sorted(event.filter.attributes.items()))}
        spec["subscriber"] = _sink(fn)
        objects.append({"apiVersion": TRIGGER_API, "kind": "Trigger", "metadata": child_metadata(fn, child_name(fn.name, event.name)), "spec": spec})
    return objects
