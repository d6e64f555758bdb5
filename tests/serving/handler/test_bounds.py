"""The handler runtime's bounds, through the real handler container process and a real Triton (issue 14, item 5).

- a request body over AIFN_MAX_BODY_BYTES is a JSON 413, declared (Content-Length, refused
  before it is read) or chunked (refused as soon as it passes the limit), on the function's
  routes and on kserve's;
- user code that runs past AIFN_REQUEST_TIMEOUT_SECONDS (spec.timeoutSeconds) is answered
  504; a synchronous call keeps its worker thread until it returns (Python cannot stop a
  thread), so when every worker is held the readiness probe answers 503 saying so, and 200
  again once they are free;
- the server keeps serving throughout.
"""

from __future__ import annotations

import http.client
import json
import socket
import textwrap
import time
from pathlib import Path

import pytest
from support.processes import wait_until

from .conftest import HandlerServer, post_json, request

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]

APP = textwrap.dedent(
    '''
    import asyncio
    import json
    import time

    import numpy as np


    def lambda_handler(event, context):
        query = event["queryStringParameters"] or {}
        if "sleep" in query:
            time.sleep(float(query["sleep"]))
            return {"slept": float(query["sleep"])}
        out = context.infer({"image": np.zeros((1, 8, 8), np.float32)})
        return {"label": int(out["label"][0, 0]), "size": len(event["body"] or "")}


    async def async_handler(event, context):
        query = event["queryStringParameters"] or {}
        if "sleep" in query:
            await asyncio.sleep(float(query["sleep"]))
        return {"ok": True}
    '''
)


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    code = tmp_path_factory.mktemp("user-code")
    (code / "app.py").write_text(APP)
    return code


def _post(server: HandlerServer, path: str, body: object, chunked: bool = False) -> tuple[int, bytes]:
    """POST that still reads the answer when the server answers (413) and closes before the body is all sent."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "text/plain"}, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, response.read()
    except (BrokenPipeError, ConnectionResetError):  # the server answered and closed while the body was still going
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_request_bodies_over_the_limit_are_413(start_handler, code_dir: Path) -> None:
    fn = start_handler(code_dir, "app:lambda_handler", AIFN_MAX_BODY_BYTES=str(1024 * 1024))
    fits = request(f"{fn.url}/", b"x" * (1024 * 1024), {"Content-Type": "text/plain"})
    assert fits.status == 200 and fits.json()["size"] == 1024 * 1024, fits.body

    status, body = _post(fn, "/", b"x" * (1024 * 1024 + 1))
    assert status == 413, body[:300]
    error = json.loads(body)["error"]
    assert "request body" in error and "1048576" in error and "AIFN_MAX_BODY_BYTES" in error, error

    status, body = _post(fn, "/invoke", (b"y" * 65536 for _ in range(40)), chunked=True)  # 2.5 MiB, no Content-Length
    assert status == 413, body[:300]
    assert "1048576" in json.loads(body)["error"]

    for chunked in (False, True):  # kserve's own routes are bounded too
        payload = b"[" + b"0," * 600_000 + b"0]"
        status, body = _post(fn, "/v1/models/digits-fn:predict", iter([payload]) if chunked else payload, chunked=chunked)
        assert status == 413, (chunked, body[:300])

    # A declared 1 GiB body is refused from its headers, without reading (or buffering) it.
    with socket.create_connection(("127.0.0.1", fn.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1073741824\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5
    assert request(f"{fn.url}/", b"ok", {"Content-Type": "text/plain"}).status == 200


def test_calls_past_the_timeout_are_504_and_readiness_tells_when_workers_are_exhausted(start_handler, code_dir: Path) -> None:
    fn = start_handler(code_dir, "app:lambda_handler", AIFN_REQUEST_TIMEOUT_SECONDS="2", AIFN_HANDLER_THREADS="2")
    started = time.monotonic()
    hung = request(f"{fn.url}/?sleep=8", b"{}", {"Content-Type": "application/json"})
    assert hung.status == 504, hung.body
    assert 1.5 < time.monotonic() - started < 6
    assert hung.headers["content-type"] == "application/json"
    error = hung.json()["error"]
    assert "2s" in error and "timeoutSeconds" in error, error

    second = request(f"{fn.url}/?sleep=8", b"{}", {"Content-Type": "application/json"})
    assert second.status == 504, second.body
    ready = request(f"{fn.url}/v2/health/ready")
    assert ready.status == 503, ready.body
    assert "2 worker threads" in ready.json()["error"], ready.json()
    assert request(f"{fn.url}/v2/health/live").status == 200  # live: the process is fine, only busy

    wait_until("readiness to come back once the hung calls returned",
               lambda: request(f"{fn.url}/v2/health/ready").status == 200, 20, interval=0.2)
    served = post_json(f"{fn.url}/", {})
    assert served.status == 200 and "label" in served.json(), served.body
    metrics = request(f"{fn.url}/metrics").body.decode()
    assert 'aifn_handler_requests_total{function="digits-fn",status="504"} 2.0' in metrics


def test_async_calls_past_the_timeout_are_504_and_cancelled(start_handler, code_dir: Path) -> None:
    fn = start_handler(code_dir, "app:async_handler", AIFN_REQUEST_TIMEOUT_SECONDS="1")
    hung = request(f"{fn.url}/?sleep=30", b"{}", {"Content-Type": "application/json"})
    assert hung.status == 504 and "1s" in hung.json()["error"], hung.body
    assert request(f"{fn.url}/v2/health/ready").status == 200
    assert request(f"{fn.url}/", b"{}", {"Content-Type": "application/json"}).json() == {"ok": True}
