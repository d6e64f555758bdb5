"""The chart's PrometheusRule and Grafana dashboard ConfigMap, rendered by the real helm.

Both are off by default. The PrometheusRule is built from files/prometheus-rules.yaml (the file
promtool tests): with default values its groups are that file's, and the values change only `for`,
`severity`, the trailing threshold and the extra labels.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.helm import CHART, by_kind, helm, helm_binary, one
from support.prometheus import binary
from support.promql import DASHBOARD, RULES

pytestmark = pytest.mark.skipif(helm_binary() is None, reason="helm not found: run `make tools` (builds bin/helm)")

TUNED = {
    "metrics": {
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "alertLabels": {"team": "ml"},
            "alerts": {
                "AIFunctionNotReady": {"for": "30m", "severity": "critical"},
                "AIFunctionHighErrorRate": {"for": "5m", "severity": "warning", "threshold": 0.25},
            },
        },
        "grafanaDashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "aifn"}},
    }
}


def template(tmp_path: Path, values: dict[str, Any], *extra: str) -> list[dict[str, Any]]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = helm("template", "aifn", str(CHART), "--namespace", "aifn-system", "-f", str(path), *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def dashboards(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in by_kind(objects, "ConfigMap") if "aifn.json" in o.get("data", {})]


@pytest.mark.parametrize(
    ("rule", "dashboard"),
    [(False, False), (True, False), (False, True), (True, True)],
)
def test_each_flag_adds_its_object_and_only_that(tmp_path: Path, rule: bool, dashboard: bool) -> None:
    values = {"metrics": {"prometheusRule": {"enabled": rule}, "grafanaDashboard": {"enabled": dashboard}}}
    objects = template(tmp_path, values)
    assert len(by_kind(objects, "PrometheusRule")) == int(rule)
    assert len(dashboards(objects)) == int(dashboard)
    lint = helm("lint", str(CHART), "-f", str(tmp_path / "values.yaml"))
    assert "0 chart(s) failed" in lint.stdout, lint.stdout


def test_defaults_render_the_rule_file_exactly(tmp_path: Path) -> None:
    rule = one(template(tmp_path, {"metrics": {"prometheusRule": {"enabled": True}}}), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    assert rule["metadata"]["namespace"] == "aifn-system"


def test_values_tune_for_severity_threshold_and_labels(tmp_path: Path) -> None:
    rule = one(template(tmp_path, TUNED), "PrometheusRule")
    source = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    rendered = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rendered["AIFunctionNotReady"]["for"] == "30m"
    assert rendered["AIFunctionNotReady"]["labels"] == {"severity": "critical", "team": "ml"}
    assert rendered["AIFunctionHighErrorRate"]["expr"] == source["AIFunctionHighErrorRate"]["expr"].replace("> 0.05", "> 0.25")
    for name, alert in rendered.items():
        assert alert["labels"]["team"] == "ml"
        assert alert["annotations"] == source[name]["annotations"]
        if name not in TUNED["metrics"]["prometheusRule"]["alerts"]:
            assert alert == {**source[name], "labels": {**source[name]["labels"], "team": "ml"}}

    program = binary("promtool")
    if program is None:
        pytest.skip("promtool not found: install Debian's prometheus package (`make monitoring-deps`)")
    tuned_rules = tmp_path / "tuned-rules.yaml"
    tuned_rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    check = subprocess.run([str(program), "check", "rules", str(tuned_rules)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_dashboard_configmap_carries_the_dashboard_for_grafanas_sidecar(tmp_path: Path) -> None:
    (configmap,) = dashboards(template(tmp_path, TUNED))
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "aifn"}
    assert json.loads(configmap["data"]["aifn.json"]) == json.loads(DASHBOARD.read_text())


@pytest.mark.parametrize(("value", "expected"), [("0.1", "> 0.1"), ("1", "> 1"), ("lots", None)])
def test_a_threshold_given_with_set_is_used_or_refused_by_the_schema(value: str, expected: str | None) -> None:
    """--set passes 0.1 as a string: the schema takes a string of digits, and refuses anything else."""
    result = helm("template", "aifn", str(CHART), "--set", "metrics.prometheusRule.enabled=true",
                  "--set", f"metrics.prometheusRule.alerts.AIFunctionHighErrorRate.threshold={value}", check=False)
    if expected is None:
        assert result.returncode != 0 and "AIFunctionHighErrorRate/threshold" in result.stderr, result.stderr
        return
    assert result.returncode == 0, result.stderr
    rules = {r["alert"]: r for g in one([d for d in yaml.safe_load_all(result.stdout) if d], "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert rules["AIFunctionHighErrorRate"]["expr"].endswith(expected)
