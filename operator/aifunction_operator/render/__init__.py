"""Stage 2 of the pipeline: render the desired Kubernetes objects for a function (pure, no I/O)."""

from __future__ import annotations

from typing import Any

from ..config import OperatorConfig
from ..spec import AIFunction
from .service import render_service


def render(fn: AIFunction, config: OperatorConfig) -> list[dict[str, Any]]:
    """Every object the function needs, the Knative Service first, in a stable order."""
    return [render_service(fn, config)]


__all__ = ["render", "render_service"]
