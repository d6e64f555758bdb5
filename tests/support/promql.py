"""The PromQL aifn ships (the chart's alert rules and dashboard panels) and the metric names it selects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "aifunction-operator"
RULES = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects: identifiers that are not functions, keywords, labels or numbers.

    Label matchers, ranges and grouping clauses are removed first (after string literals, which may
    hold braces); a selector by `__name__` is refused, since its name is not an identifier here.
    """
    if "__name__" in expr:
        raise ValueError(f"selects by __name__, which metric_names does not read: {expr}")
    text = _STRING.sub('""', expr)
    for pattern in (_MATCHERS, _RANGE, _GROUPING):
        text = pattern.sub(" ", text)
    return {m.group(1) for m in _NAME.finditer(text) if m.group(2) is None and m.group(1).lower() not in _KEYWORDS}


def alert_exprs() -> dict[str, str]:
    """Alert name -> expression, from the rule file."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def panel_exprs() -> dict[str, str]:
    """'panel title / refId' -> expression, for every query of every dashboard panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} / {t['refId']}": t["expr"] for p in panels for t in p.get("targets", [])}
