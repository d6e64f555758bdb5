"""Render the desired Kubernetes objects for a function (pure, no I/O): `aifn render` and the operator's decide step."""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import AIFunction
from .config import OperatorConfig
from .handler import render_config_map
from .manifest import Manifest
from .service import render_service
from .triggers import render_ping_sources, render_triggers


@dataclass(frozen=True)
class Rendered:
    """A function's desired objects, by role."""

    service: Manifest  # the Knative Service
    config_maps: tuple[Manifest, ...]  # the handler code the Service's pods mount
    eventing: tuple[Manifest, ...]  # PingSources, then Triggers

    def objects(self) -> list[Manifest]:
        """Every object in a stable order: the Service, the ConfigMaps, PingSources, Triggers."""
        return [self.service, *self.config_maps, *self.eventing]


def render_function(fn: AIFunction, config: OperatorConfig) -> Rendered:
    """The function's desired objects; raises InvalidSpec for what only rendering can find."""
    config_map = render_config_map(fn)
    return Rendered(
        service=render_service(fn, config),
        config_maps=(config_map,) if config_map is not None else (),
        eventing=(*render_ping_sources(fn), *render_triggers(fn)),
    )


def render(fn: AIFunction, config: OperatorConfig) -> list[Manifest]:
    """Every object the function needs, in a stable order (what `aifn render` prints)."""
    return render_function(fn, config).objects()


__all__ = ["Manifest", "Rendered", "render", "render_function", "render_service"]
