"""Metric names read out of PromQL, and every name the alerts and dashboard use defined in the code.

tests/integration/test_monitoring.py checks the same names against a real Prometheus's scrape.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from aifunction_operator.controller.observability import Metrics
from aifunction_operator.local.metrics import GatewayMetrics
from support.promql import alert_exprs, metric_names, panel_exprs

SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('aifn_functions{ready!="True", reason="a{b}"} > 0', {"aifn_functions"}),
        ("sum by (function, le) (rate(aifn_x_bucket[5m] offset 1h))", {"aifn_x_bucket"}),
        ("histogram_quantile(0.99, sum without (instance) (rate(a_bucket[5m:1m])))", {"a_bucket"}),
        ("a / on (job) group_left (version) b unless c and bool d or 1e3", {"a", "b", "c", "d"}),
        ("increase(a_total[15m]) - increase(b_total[15m]) > 0.05", {"a_total", "b_total"}),
        ('label_replace(x, "dst", "$1", "src", "(.*)") + Inf + NaN', {"x"}),
        ("rate(ns:metric:rate5m[1m])", {"ns:metric:rate5m"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_selector_by_name_is_refused_rather_than_missed() -> None:
    with pytest.raises(ValueError, match="__name__"):
        metric_names('{__name__="aifn_functions"}')


def exposed(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry's metrics can expose (labelled ones too, before their first child)."""
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES.get(family.type, ("",))}


def test_every_name_an_alert_or_panel_uses_is_a_metric_the_code_defines() -> None:
    defined = exposed(Metrics().registry) | exposed(GatewayMetrics("fn").registry)
    used = {where: metric_names(expr) for where, expr in {**alert_exprs(), **panel_exprs()}.items()}
    assert all(used.values()), [where for where, names in used.items() if not names]
    unknown = {where: sorted(names - defined) for where, names in used.items() if names - defined}
    assert not unknown, unknown
