"""Metrics, health endpoints and JSON logs, served for real on a loopback port."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request

from support.processes import free_port

from aifunction_operator.controller.observability import JsonFormatter, Metrics, health_app, metrics_app, serve


def test_functions_move_between_reasons() -> None:
    metrics = Metrics()
    metrics.move_function(None, ("Unknown", "Deploying"))
    metrics.move_function(None, ("Unknown", "Deploying"))
    metrics.move_function(("Unknown", "Deploying"), ("True", "Ready"))
    metrics.move_function(("True", "Ready"), ("True", "Ready"))
    text = metrics.exposition().decode()
    assert 'aifn_functions{ready="Unknown",reason="Deploying"} 1.0' in text
    assert 'aifn_functions{ready="True",reason="Ready"} 1.0' in text
    metrics.move_function(("True", "Ready"), None)
    assert 'aifn_functions{ready="True",reason="Ready"} 0.0' in metrics.exposition().decode()


def test_reconciles_are_counted_by_result_with_durations() -> None:
    metrics = Metrics()
    metrics.observe_reconcile("Ready", 0.02)
    metrics.observe_reconcile("Ready", 0.03)
    metrics.observe_reconcile("error", 1.0)
    text = metrics.exposition().decode()
    assert 'aifn_reconciles_total{result="Ready"} 2.0' in text
    assert 'aifn_reconciles_total{result="error"} 1.0' in text
    assert "aifn_reconcile_duration_seconds_count 3.0" in text


def test_endpoints_answer_over_http() -> None:
    metrics = Metrics()
    metrics.observe_reconcile("Ready", 0.01)
    ready = {"value": False}

    async def scenario() -> list[tuple[str, int, str]]:
        health_port, metrics_port = free_port(), free_port()
        runners = [await serve(health_app(lambda: ready["value"], lambda: True), health_port, "127.0.0.1"), await serve(metrics_app(metrics), metrics_port, "127.0.0.1")]
        results = []
        try:
            for flip, url in [(False, f"http://127.0.0.1:{health_port}/readyz"), (True, f"http://127.0.0.1:{health_port}/readyz"), (True, f"http://127.0.0.1:{health_port}/healthz"), (True, f"http://127.0.0.1:{metrics_port}/metrics")]:
                ready["value"] = flip
                results.append((url.rsplit("/", 1)[1], *await asyncio.to_thread(get, url)))
        finally:
            for runner in runners:
                await runner.cleanup()
        return results

    results = asyncio.run(scenario())
    assert results[0][:2] == ("readyz", 503)
    assert results[1] == ("readyz", 200, "ready\n")
    assert results[2] == ("healthz", 200, "ok\n")
    assert results[3][1] == 200 and 'aifn_reconciles_total{result="Ready"} 1.0' in results[3][2]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_json_logs_are_one_object_a_line_with_the_kopf_object() -> None:
    record = logging.LogRecord("kopf.objects", logging.WARNING, __file__, 1, "handler %s failed", ("reconcile",), None)
    record.k8s_ref = {"namespace": "ns", "name": "fn", "uid": "u"}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["message"] == "handler reconcile failed"
    assert entry["object"] == {"namespace": "ns", "name": "fn"}
    assert entry["time"].endswith("+00:00")
