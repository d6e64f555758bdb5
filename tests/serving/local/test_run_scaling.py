"""`aifn run` with a real Triton: scale from zero, a concurrent burst, scale to zero, overload.

Each test starts the real `aifn run` command on a function file and talks HTTP to it; the
conftest teardown stops it with SIGINT and checks that no Triton process survives.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.datasets import load_digits
from support.processes import wait_until

from .conftest import digits_request

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(240)]

INFER = "/v2/models/digits/infer"


def held_out_digits(count: int) -> tuple[list[list[list[float]]], list[int]]:
    digits = load_digits()
    images = digits.images[-count:].tolist()
    return images, digits.target[-count:].tolist()


def test_cold_start_from_zero_then_scale_to_zero(run_function) -> None:
    run = run_function(scaling={"minReplicas": 0, "maxReplicas": 2}, args=("--idle-timeout", "3s"))
    time.sleep(1.0)
    assert run.triton_pids() == [], "a Triton process runs before the first request"
    assert run.status()["replicas"] == []

    images, labels = held_out_digits(20)
    response = run.post(INFER, digits_request(images))
    assert response.status == 200, response.body
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    predicted = outputs["label"]["data"]
    assert len(predicted) == 20
    assert np.mean(np.array(predicted) == np.array(labels)) >= 0.8, (predicted, labels)
    assert outputs["probabilities"]["shape"] == [20, 10]

    status = run.status()
    cold = status["last_cold_start"]
    assert cold is not None and 0 < cold["spawn"] <= cold["server_live"] <= cold["model_ready"] <= cold["first_response"]
    assert len(run.triton_pids()) == 1
    metrics = run.get("/metrics").body.decode()
    assert 'aifn_cold_starts_total{from_zero="true",function="fn0"} 1.0' in metrics
    assert 'aifn_requests_total{code="200",endpoint="infer",function="fn0"} 1.0' in metrics
    assert "aifn_cold_start_seconds_bucket" in metrics
    replica_id = status["replicas"][0]["id"]
    triton_metrics = run.get(f"/aifn/replicas/{replica_id}/metrics")
    assert triton_metrics.status == 200 and b"nv_inference_request_success" in triton_metrics.body

    wait_until("Triton to stop after the 3s idle timeout", lambda: run.triton_pids() == [], 20)
    assert run.status()["replicas"] == []
    assert "cold start: spawn" in run.log()
    wait_until("the gateway to log the stop", lambda: "replica 1 stopped" in run.log(), 10)


def test_burst_scales_past_one_replica_and_every_request_is_answered(run_function) -> None:
    run = run_function(
        scaling={"minReplicas": 0, "maxReplicas": 3, "targetConcurrency": 4, "containerConcurrency": 16},
        args=("--idle-timeout", "3s"),
    )
    images, _ = held_out_digits(4)
    body = digits_request(images)
    stop = threading.Event()
    max_replicas_seen = 0
    codes: list[int] = []

    def client() -> list[int]:
        seen = []
        while not stop.is_set():
            seen.append(run.post(INFER, body).status)
        return seen

    def serving_replicas() -> int:
        nonlocal max_replicas_seen
        replicas = run.status()["replicas"]
        max_replicas_seen = max(max_replicas_seen, len(replicas))
        return sum(1 for r in replicas if r["served"] > 0)

    with ThreadPoolExecutor(max_workers=64) as pool:
        futures = [pool.submit(client) for _ in range(64)]
        try:
            wait_until("a second replica to serve part of the burst",
                       lambda: serving_replicas() >= 2, 120, interval=0.5)
            time.sleep(2.0)  # keep the load on across replicas for a moment
        finally:
            stop.set()
        for future in futures:
            codes += future.result()
    assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    assert len(codes) >= 64
    assert 2 <= max_replicas_seen <= 3, f"{max_replicas_seen} replicas for 64 in flight with target 4 and max 3"
    wait_until("every replica to stop after the burst", lambda: run.triton_pids() == [], 30)


def test_full_queue_answers_503_with_retry_after(run_function) -> None:
    run = run_function(scaling={"maxReplicas": 1}, args=("--idle-timeout", "5s", "--queue-limit", "3"))
    images, _ = held_out_digits(1)
    body = digits_request(images)
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: run.post(INFER, body), range(10)))
    by_code = sorted(r.status for r in responses)
    assert by_code.count(200) >= 3, by_code
    rejected = [r for r in responses if r.status == 503]
    assert rejected, f"10 requests during a cold start with a queue of 3 were all accepted: {by_code}"
    for response in rejected:
        assert int(response.headers["Retry-After"]) >= 1
        assert "queue full" in response.json()["error"]
    assert run.post(INFER, body).status == 200


def test_startup_timeout_answers_503_and_the_gateway_keeps_serving(run_function) -> None:
    run = run_function(scaling={"startupTimeout": "1s"}, args=("--idle-timeout", "5s"))
    images, _ = held_out_digits(1)
    started = time.monotonic()
    response = run.post(INFER, digits_request(images))
    assert response.status == 503, response.body
    assert time.monotonic() - started < 10
    assert "Retry-After" in response.headers
    message = json.loads(response.body)["error"]
    assert "startupTimeout" in message or "could not start" in message, message
    assert run.get("/v2/health/live").status == 200
    wait_until("the start that missed startupTimeout to be counted",
               lambda: 'aifn_cold_start_timeouts_total{function="fn0"} 1.0' in run.get("/metrics").body.decode(), 15,
               diagnose=lambda: run.get("/metrics").body.decode())
    wait_until("the replica that missed its startup timeout to be stopped", lambda: run.triton_pids() == [], 15)


def test_initial_replicas_start_before_any_request_and_rps_scales_on_the_arrival_rate(run_function) -> None:
    run = run_function(
        scaling={"maxReplicas": 2, "initialReplicas": 2, "metric": "rps", "targetRequestsPerSecond": 2},
        args=("--idle-timeout", "3s"),
    )
    wait_until("initialReplicas 2 to start without any request", lambda: len(run.triton_pids()) == 2, 90, interval=0.3)
    assert run.status()["policy"]["initial_replicas"] == 2
    wait_until("the initial replicas to stop when no request came", lambda: run.triton_pids() == [], 60, interval=0.3)

    # One client, one request at a time: concurrency never exceeds 1, but the rate exceeds 2/s.
    images, _ = held_out_digits(1)
    body = digits_request(images)
    codes = []
    deadline = time.monotonic() + 120
    while len(run.status()["replicas"]) < 2 and time.monotonic() < deadline:
        codes.append(run.post(INFER, body).status)
    assert len(run.status()["replicas"]) == 2, "the rps metric did not scale past one replica"
    assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    assert run.status()["policy"]["metric"] == "rps"


def test_a_prewarm_window_keeps_a_replica_warm_without_requests_and_an_upcoming_one_does_not(run_function) -> None:
    """spec.scaling.schedules under `aifn run`: the autoscaler's floor is the open window's minReplicas."""
    # A window that opens every minute and lasts two is always open; one in two days' time is not open now.
    later = time.gmtime(time.time() + 2 * 86400)
    run = run_function(
        scaling={"minReplicas": 0, "maxReplicas": 2, "schedules": [
            {"name": "always", "cron": "* * * * *", "duration": "2m", "minReplicas": 1},
            {"name": "later", "cron": f"0 12 {later.tm_mday} {later.tm_mon} *", "duration": "1h", "minReplicas": 2,
             "leadTime": "0s"}]},
        args=("--idle-timeout", "2s"),
    )
    wait_until("the open window's replica to be Ready without any request",
               lambda: [r["state"] for r in run.status()["replicas"]] == ["ready"], 90, interval=0.3,
               diagnose=lambda: json.dumps(run.status()))
    prewarm = run.status()["prewarm"]
    assert prewarm["min_replicas"] == 1 and [w["name"] for w in prewarm["windows"]] == ["always"], prewarm
    assert prewarm["next"]["name"] == "always", prewarm  # the next minute's window comes first
    time.sleep(5.0)  # past the 2 s idle timeout: the floor holds the replica
    assert len(run.triton_pids()) == 1 and [r["state"] for r in run.status()["replicas"]] == ["ready"]
    assert "pre-warm: at least 1 replicas (always until" in run.log()
