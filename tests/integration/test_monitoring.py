"""A real Prometheus scraping a real operator and a real `aifn run`: every metric an alert or a dashboard
panel names is in the scrape, every expression evaluates, and the rule file loads.

The operator reconciles one function on the real control plane (no Knative controller: it stays
Deploying, so not Ready). `aifn run` gets a startupTimeout of 1s, shorter than Triton's start, so its
inference requests get 503 and its starts time out: the alerts on those see the real condition.
Prometheus and promtool are Debian's prometheus package (`make test` installs it: hack/monitoring-deps.sh).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.local import conftest as local_run
from support.kube_client import TestClient, function
from support.operator_process import OperatorProcess
from support.processes import wait_until
from support.prometheus import Prometheus, binary
from support.promql import RULES, alert_exprs, metric_names, panel_exprs

pytestmark = [
    pytest.mark.integration,
    pytest.mark.triton,
    pytest.mark.skipif(binary("prometheus") is None, reason="prometheus not found: run `make monitoring-deps` (Debian's prometheus package)"),
]

run_function = local_run.run_function  # the `aifn run` fixture of tests/serving/local: started, stopped and checked
INFER = "/v2/models/digits/infer"

# Whether each alert's expression holds in this scene (the operator's function Deploying, aifn run's starts timing out).
HOLDS = {
    "AIFunctionNotReady": True,
    "AIFunctionWaitingForGPUNode": False,
    "AIFunctionReconcileErrors": False,
    "AIFunctionHighErrorRate": True,
    "AIFunctionColdStartTimeouts": True,
    "AIFunctionReplicaFailures": False,
}


@pytest.fixture
def scene(kube: TestClient, namespace: str, start_operator: Any, run_function: Any, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus scraping an operator with one function and an `aifn run` whose starts time out."""
    operator: OperatorProcess = start_operator()
    kube.create_function(namespace, function("digits"))
    wait_until("the operator to count the function", lambda: "aifn_functions{" in operator.metrics(), 30, diagnose=operator.log_tail)
    run = run_function(scaling={"startupTimeout": "1s"}, args=("--idle-timeout", "5s"))
    targets = {"aifn-operator": f"127.0.0.1:{operator.metrics_port}", "aifn-run": run.url.removeprefix("http://")}
    prometheus = Prometheus(tmp_path, targets, rule_files=(RULES,)).start()
    try:
        wait_until("both targets scraped", lambda: prometheus.targets_up() == {job: "up" for job in targets}, 30,
                   prometheus.component, diagnose=lambda: str(prometheus.api("targets")))
        wait_until("a scrape of aifn run before any request", lambda: prometheus.query("aifn_cold_start_timeouts_total == 0"), 30)
        body = local_run.digits_request([[[0.0] * 8] * 8])
        for sent in (1, 2):  # rates need the counters to move between two scrapes
            response = run.post(INFER, body)
            assert response.status == 503, response.body
            wait_until(f"Prometheus to scrape {sent} answered 503", lambda: prometheus.query(
                f'aifn_requests_total{{endpoint="infer", code="503"}} == {sent}'), 30)
        wait_until("Prometheus to scrape a start past startupTimeout",
                   lambda: prometheus.query("aifn_cold_start_timeouts_total > 0"), 30)
        yield prometheus
    finally:
        prometheus.stop()


def test_every_metric_an_alert_or_panel_names_is_scraped_and_every_expression_evaluates(scene: Prometheus) -> None:
    scraped = scene.metric_names()
    exprs = {**{f"alert {name}": expr for name, expr in alert_exprs().items()}, **{f"panel {where}": expr for where, expr in panel_exprs().items()}}
    missing = {where: sorted(metric_names(expr) - scraped) for where, expr in exprs.items() if metric_names(expr) - scraped}
    assert not missing, f"not in the scrape: {missing}\nscraped: {sorted(n for n in scraped if n.startswith('aifn_'))}"
    for expr in exprs.values():
        scene.query(expr)  # raises with Prometheus' error
    print(f"{len(exprs)} expressions over {len(set().union(*map(metric_names, exprs.values())))} metric names, all scraped")


def test_the_alerts_see_the_real_conditions_and_prometheus_loads_and_fires_them(scene: Prometheus) -> None:
    seen = {alert: bool(scene.query(expr)) for alert, expr in alert_exprs().items()}
    assert seen == HOLDS, {alert: f"holds: {held}, expected {HOLDS.get(alert)}" for alert, held in seen.items() if held != HOLDS.get(alert)}

    def evaluated() -> list[dict[str, Any]]:
        rules = [rule for group in scene.api("rules", type="alert")["groups"] for rule in group["rules"]]
        return rules if all(rule.get("health") == "ok" for rule in rules) else []

    assert {rule["name"] for rule in wait_until("the rules to be evaluated", evaluated, 15)} == set(HOLDS)
    firing = wait_until("AIFunctionColdStartTimeouts to fire (for: 0s)", lambda: [
        a for a in scene.api("alerts")["alerts"] if a["labels"]["alertname"] == "AIFunctionColdStartTimeouts" and a["state"] == "firing"], 15)
    assert firing[0]["labels"]["function"] == "fn0"
