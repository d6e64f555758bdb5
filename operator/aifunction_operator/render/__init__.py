"""Stage 2 of the pipeline: render the desired Kubernetes objects for a function (pure, no I/O)."""

from __future__ import annotations

from typing import Any

from .config import OperatorConfig
from ..spec import AIFunction
from .handler import render_config_map
from .service import render_service
from .triggers import render_ping_sources, render_triggers


def render(fn: AIFunction, config: OperatorConfig) -> list[dict[str, Any]]:
    """Every object the function needs, in a stable order: the Knative Service first, then the
    handler code ConfigMap, PingSources and Triggers."""
    objects = [render_service(fn, config)]
    config_map = render_config_map(fn)
    if config_map is not None:
        objects.append(config_map)
    return objects + render_ping_sources(fn) + render_triggers(fn)


__all__ = ["render", "render_service"]
