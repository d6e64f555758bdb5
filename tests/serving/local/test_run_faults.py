"""`aifn run` with a real Triton: bad input gets a JSON 4xx, a crashed replica is replaced, Ctrl-C leaves nothing.

The crash test uses `tests/serving/local/models/slow` (a real python-backend model that answers after
2 s) so that requests are certainly in flight when the replica is killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.processes import wait_until

from aifunction_operator.local.tritonserver import process_group_pids

from .conftest import TEST_MODELS, digits_request

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(240)]

INFER = "/v2/models/digits/infer"
IMAGE = [[float((r * 8 + c) % 17) for c in range(8)] for r in range(8)]


def test_bad_requests_get_json_4xx_naming_the_problem(run_function) -> None:
    run = run_function(args=("--idle-timeout", "30s", "--max-body-bytes", "65536"))
    assert run.post(INFER, digits_request([IMAGE])).status == 200  # warm: Triton checks shapes and dtypes

    cases = {
        "malformed JSON": (INFER, b'{"inputs": [', 400, "not valid JSON"),
        "not an object": (INFER, b"[1, 2]", 400, "must be a JSON object"),
        "no inputs": (INFER, b'{"outputs": []}', 400, "'inputs'"),
        "unknown model": ("/v2/models/nosuch/infer", digits_request([IMAGE]), 404, "unknown model 'nosuch'"),
        "unknown model metadata": ("/v2/models/nosuch", b"", 404, "unknown model 'nosuch'"),
        "wrong shape": (
            INFER,
            json.dumps({"inputs": [{"name": "image", "shape": [1, 64], "datatype": "FP32", "data": [1.0] * 64}]}).encode(),
            400, "unexpected shape for input 'image'",
        ),
        "wrong datatype": (
            INFER,
            json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "INT32", "data": [1] * 64}]}).encode(),
            400, "data-type is 'INT32'",
        ),
        "wrong input name": (
            INFER,
            json.dumps({"inputs": [{"name": "pixels", "shape": [1, 8, 8], "datatype": "FP32", "data": [1.0] * 64}]}).encode(),
            400, "'pixels'",
        ),
        "too few values for the shape": (
            INFER,
            json.dumps({"inputs": [{"name": "image", "shape": [2, 8, 8], "datatype": "FP32", "data": [1.0] * 64}]}).encode(),
            400, "shape [2, 8, 8] needs 128 values but 'data' has 64",
        ),
        "body over the size limit": (INFER, b'{"inputs": [' + b" " * 70000 + b"]}", 413, "larger than the gateway's limit"),
    }
    for case, (path, body, status, fragment) in cases.items():
        response = run.post(path, body)
        assert response.status == status, f"{case}: {response.status} {response.body[:300]!r}"
        assert response.headers["Content-Type"].startswith("application/json"), case
        error = response.json()["error"]
        assert fragment in error, f"{case}: {error!r}"

    unknown_path = run.get("/v1/models/digits:predict")
    assert unknown_path.status == 404 and "/v2/models/digits" in unknown_path.json()["error"]
    assert run.post(INFER, digits_request([IMAGE])).status == 200, "the gateway stopped serving after bad input"
    metrics = run.get("/metrics").body.decode()
    assert 'aifn_requests_total{code="400",endpoint="infer",function="fn0"}' in metrics


def test_crashed_replica_fails_in_flight_requests_and_is_replaced(run_function) -> None:
    run = run_function(model="slow", repository=TEST_MODELS, scaling={"maxReplicas": 1}, args=("--idle-timeout", "30s"))
    body = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}]}).encode()
    first = run.post("/v2/models/slow/infer", body)
    assert first.status == 200 and first.json()["outputs"][0]["data"] == [1.0, 2.0]
    (replica,) = run.status()["replicas"]

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(run.post, "/v2/models/slow/infer", body, None, 30.0) for _ in range(3)]
        wait_until("3 requests in flight", lambda: run.status()["in_flight"] == 3, 10)
        killed_at = time.monotonic()
        os.kill(replica["pid"], signal.SIGKILL)
        responses = [f.result() for f in futures]
    assert time.monotonic() - killed_at < 10, "requests hung after the replica crashed"
    for response in responses:
        assert 500 <= response.status < 600, response.status
        assert "replica" in response.json()["error"]

    wait_until("the crashed replica's python backend stubs to be killed",
               lambda: not process_group_pids(replica["pid"]), 10)
    again = run.post("/v2/models/slow/infer", body)
    assert again.status == 200, again.body
    (new_replica,) = run.status()["replicas"]
    assert new_replica["pid"] != replica["pid"]
    assert "aifn_replica_failures_total" in run.get("/metrics").body.decode()
    assert "exited with status -9" in run.log()


def test_ctrl_c_stops_gateway_and_every_replica(run_function) -> None:
    run = run_function(scaling={"minReplicas": 1, "maxReplicas": 2}, args=("--idle-timeout", "60s"))
    pids = wait_until("minReplicas 1 to start a replica without any request", run.triton_pids, 60)
    assert run.post(INFER, digits_request([IMAGE])).status == 200
    stubs = {pid: process_group_pids(pid) for pid in pids}
    assert all(len(members) >= 2 for members in stubs.values()), f"expected Triton plus a python stub: {stubs}"
    assert run.stop(timeout=30) == 0
    for pid in pids:
        assert not process_group_pids(pid), f"replica group {pid} survived Ctrl-C: {process_group_pids(pid)}"
    assert "aifn run: stopped" in run.log()


def test_sigkilled_gateway_leaves_no_triton_behind(run_function) -> None:
    """SIGKILL gives the gateway no chance to clean up: the kernel's parent-death signal stops its replicas."""
    run = run_function(scaling={"maxReplicas": 2}, args=("--idle-timeout", "60s"))
    assert run.post(INFER, digits_request([IMAGE])).status == 200
    (replica,) = run.status()["replicas"]
    group = process_group_pids(replica["pid"])
    assert len(group) >= 2, f"expected Triton plus a python stub: {group}"
    os.kill(run.proc.pid, signal.SIGKILL)  # the gateway alone, not its process group
    run.proc.wait(timeout=10)
    run.expected_exit = -signal.SIGKILL
    wait_until(f"replica group {replica['pid']} to exit after the gateway died",
               lambda: not process_group_pids(replica["pid"]), 60)


def test_model_that_cannot_load_answers_503_naming_the_cause(run_function) -> None:
    run = run_function(model="broken", repository=TEST_MODELS, args=("--idle-timeout", "30s"))
    body = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}).encode()
    started = time.monotonic()
    response = run.post("/v2/models/broken/infer", body)
    assert response.status == 503, response.body
    assert time.monotonic() - started < 60, "the request waited for startupTimeout instead of failing with the start"
    assert "Retry-After" in response.headers
    assert "Triton could not start" in response.json()["error"]
    assert "failed to load 'broken' version 1: Internal: RuntimeError: broken test model" in response.json()["error"]
    assert "the weights file is missing" in run.log()
    assert run.get("/v2/health/live").status == 200
    wait_until("the failed replica to be gone", lambda: run.triton_pids() == [], 15)


def test_request_over_timeout_seconds_gets_504_and_the_replica_keeps_serving(run_function) -> None:
    run = run_function(model="slow", repository=TEST_MODELS, timeout_seconds=1, args=("--idle-timeout", "30s"))
    body = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [3.0]}]}).encode()
    # The cold start is not part of the request timeout: the first request waits for the replica, then times out at it.
    started = time.monotonic()
    response = run.post("/v2/models/slow/infer", body)
    assert response.status == 504, response.body
    assert "did not answer within 1s" in response.json()["error"]
    assert time.monotonic() - started < 30
    assert len(run.status()["replicas"]) == 1 and run.status()["replicas"][0]["state"] == "ready"
    assert run.get("/v2/models/slow/config").status == 200, "the replica stopped serving after a timeout"
