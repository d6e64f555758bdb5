"""The alert rules (charts/aifunction-operator/files/prometheus-rules.yaml) under `promtool test rules`.

rules_test.yaml holds the cases: for every alert, series that make it fire and series that must not.
promtool comes from Debian's prometheus package (`make test` installs it: hack/monitoring-deps.sh).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from support.prometheus import binary
from support.promql import CHART, RULES, alert_exprs

RULES_TEST = Path(__file__).parent / "rules_test.yaml"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    program = binary("promtool")
    if program is None:
        pytest.skip("promtool not found: install Debian's prometheus package (`make monitoring-deps`, part of `make test`)")
    result = subprocess.run([str(program), *args], capture_output=True, text=True, timeout=120)
    print(result.stdout, result.stderr)
    return result


def test_the_rule_file_is_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_exprs())} rules found" in result.stdout


def test_promtool_test_rules_passes() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires == set(alert_exprs()), {"no firing case": sorted(set(alert_exprs()) - fires)}
    assert silent == set(alert_exprs()), {"no silent case": sorted(set(alert_exprs()) - silent)}


def test_the_values_tune_exactly_the_alerts_of_the_rule_file() -> None:
    alerts = set(alert_exprs())
    assert set(VALUES["metrics"]["prometheusRule"]["alerts"]) == alerts
    schema = SCHEMA["properties"]["metrics"]["properties"]["prometheusRule"]["properties"]["alerts"]
    assert set(schema["propertyNames"]["enum"]) == set(schema["required"]) == alerts


def test_each_threshold_in_values_is_the_number_its_expression_ends_with() -> None:
    for alert, tune in VALUES["metrics"]["prometheusRule"]["alerts"].items():
        if "threshold" in tune:
            assert float(alert_exprs()[alert].rsplit(" ", 1)[1]) == float(tune["threshold"]), alert
