"""The handler outlives Triton restarts: while Triton is down requests are a 503 that says so
and readiness is false; when Triton is back on the same port the pooled connections (now
closed by the old server) are replaced and requests succeed again, without restarting the handler."""

from __future__ import annotations

import textwrap

import pytest

from aifunction_operator.local.tritonserver import TritonProcess, TritonUnavailable, find_triton, free_ports

from .conftest import MODEL_REPO, launch_handler, post_json, request, wait_ready

pytestmark = [pytest.mark.triton, pytest.mark.timeout(400)]

APP = textwrap.dedent(
    '''
    import json
    import numpy as np

    def lambda_handler(event, context):
        x = np.asarray(json.loads(event["body"])["pixels"], dtype=np.float32).reshape(-1, 8, 8)
        return {"labels": context.infer({"image": x})["label"][:, 0].tolist()}
    '''
)


def test_requests_recover_after_triton_restarts(tmp_path, tmp_path_factory, digits_data) -> None:
    try:
        install = find_triton()
    except TritonUnavailable as exc:
        pytest.skip(f"no usable tritonserver on this machine: {exc}")
    ports = free_ports()
    logs = tmp_path_factory.mktemp("restart")

    def triton(n: int) -> TritonProcess:
        server = TritonProcess(install, MODEL_REPO, "digits", ports=ports, log_path=logs / f"triton-{n}.log")
        server.start()
        server.wait_ready(180)
        return server

    (tmp_path / "app.py").write_text(APP)
    images, truth = digits_data
    payload = {"pixels": images[:16].reshape(16, 64).tolist()}
    first = triton(1)
    handler = launch_handler(tmp_path, "app:lambda_handler", first.http_url, logs)
    try:
        wait_ready(handler)
        for _ in range(5):  # connections in the pool
            assert post_json(f"{handler.url}/", payload).status == 200
        before = post_json(f"{handler.url}/", payload)
        assert before.status == 200
        assert sum(a == b for a, b in zip(before.json()["labels"], truth[:16])) >= 15

        first.stop()
        down = post_json(f"{handler.url}/", payload)
        assert down.status == 503 and "digits" in down.json()["error"]
        assert request(f"{handler.url}/v2/health/ready").status == 503

        second = triton(2)
        try:
            wait_ready(handler)
            after = [post_json(f"{handler.url}/", payload) for _ in range(5)]
            assert [a.status for a in after] == [200] * 5
            assert after[0].json() == before.json()
        finally:
            second.stop()
        assert handler.proc.poll() is None
    finally:
        handler.stop()
        first.stop()
