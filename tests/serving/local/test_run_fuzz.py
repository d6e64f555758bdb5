"""HTTP fuzzing of the `aifn run` gateway with a real Triton behind it (issue 14, item 10).

A fixed-seed sequence of malformed requests over raw sockets (tests/support/http_fuzz.py):
every one is answered with a JSON 4xx/5xx (or a 200 where the request happened to be valid),
or, for requests that cannot be framed at all (a body that never comes, headers past the
parser's limits), the connection is closed; none hangs, and afterwards the server still
serves a valid inference. Counts by kind and status are printed.
"""

from __future__ import annotations

import collections
import json
import random
import time
from urllib.parse import urlparse

import pytest
from support.http_fuzz import Case, cases, request, send

from .conftest import digits_request

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(400)]

SEED = 1414
COUNT = 300
INFER = "/v2/models/digits/infer"
IMAGE = [[float((r * 8 + c) % 17) for c in range(8)] for r in range(8)]


def check_case(host: str, port: int, case: Case, tally: collections.Counter, problems: list[str]) -> None:
    outcome = send(host, port, case)
    tally[(case.kind, outcome.status)] += 1
    if outcome.status is None:
        if case.expect_response:
            problems.append(f"{case.kind}: closed without a response to {case.request[:300]!r}")
        return
    if outcome.status >= 500:
        print(f"{case.kind}: {outcome.status} {outcome.body[:300]!r} for {case.request[-300:]!r}")
    if outcome.status == 200:
        if not outcome.json_error() and "json" not in outcome.headers.get("content-type", ""):
            problems.append(f"{case.kind}: 200 that is not JSON: {outcome.raw[:300]!r}")
        return
    if not 400 <= outcome.status < 600:
        problems.append(f"{case.kind}: status {outcome.status}: {outcome.raw[:300]!r}")
    elif not outcome.json_error():
        problems.append(f"{case.kind}: {outcome.status} that is not a JSON error: {outcome.raw[:300]!r}\n  request: {case.request[:200]!r}")


def test_malformed_requests_get_json_errors_and_the_gateway_still_serves(run_function) -> None:
    run = run_function(scaling={"maxReplicas": 1}, args=("--idle-timeout", "300s", "--read-timeout", "2s"))
    valid = digits_request([IMAGE])
    warm = run.post(INFER, valid)
    assert warm.status == 200, warm.body
    expected = warm.json()
    address = urlparse(run.url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    tally: collections.Counter = collections.Counter()
    problems: list[str] = []
    started = time.monotonic()
    for case in cases(random.Random(SEED), INFER, valid, COUNT):
        check_case(host, port, case, tally, problems)
    for path in ("/v2/models/digits", "/v2/models/nope/infer", "/v2/repository/index", "/v2/models/digits/trace/setting", "/%00", "/" + "x" * 5000):
        check_case(host, port, Case("paths", request("POST", path, [("Content-Type", "application/json")], valid, length=len(valid))), tally, problems)
    seconds = time.monotonic() - started
    print(f"\ngateway fuzz: {sum(tally.values())} cases (seed {SEED}) in {seconds:.1f}s")
    for (kind, status), n in sorted(tally.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"  {kind:20} {status!s:5} x{n}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:15])
    # Still serving: the same answer as before, the same replica, nothing left in flight.
    after = run.post(INFER, valid)
    assert after.status == 200 and after.json()["outputs"] == expected["outputs"], after.body
    assert json.loads(run.get("/aifn/status").body)["replicas"], "the replica went away"
    assert run.proc.poll() is None


# Found by the fuzzing above: aiohttp (before Envoy) answered these before the application, in
# text/plain that echoed the offending bytes; Envoy answers oversized heads with a JSON 431; Triton answered wrong methods with a text/plain 405, and data of the
# wrong JSON type or a negative binary_data_size with a 500 (the caller's mistake: now 400).
def _infer(item: dict, binary: bytes = b"") -> bytes:
    """A raw inference request for the digits input with `item`'s datatype and data (or binary data)."""
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8], **item}]}).encode()
    extra = [("Inference-Header-Content-Length", str(len(header)))] if binary else []
    return request("POST", INFER, [("Content-Type", "application/json"), *extra], header + binary, length=len(header) + len(binary))


PROTOCOL_REFUSALS = [
    ("header over 8 KiB", request("POST", INFER, [("X-Big", "a" * 9000)], b"{}", length=2), 431, "over the gateway's limit"),
    ("too many headers", request("POST", INFER, [(f"X-H{i}", "v") for i in range(200)], b"{}", length=2), 431, "limit"),
    ("bytes after Connection: close", request("POST", INFER, [], b'{"inputs": []}', length=2), 400, "request body"),
    ("request line over 8 KiB", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, "over the gateway's limit"),
    ("FP32 data that are strings", _infer({"datatype": "FP32", "data": ["a"] * 64}), 400, "datatype FP32 takes numbers in 'data', got \"a\""),
    ("INT8 data that are numbers", _infer({"datatype": "INT8", "data": [0.5] * 64}), 400, "datatype INT8 takes integers"),
    ("negative binary_data_size", _infer({"datatype": "FP32", "parameters": {"binary_data_size": -4}}, binary=b"\0" * 256),
     400, "binary_data_size must be a non-negative integer"),
    ("binary header length not ASCII digits", request("POST", INFER, [("Inference-Header-Content-Length", "1_0")], b"{}", length=2), 400, "must be an integer"),
    ("method Triton refuses", request("PATCH", INFER, [], b"{}", length=2), 405, "a model's calls are GET or POST"),
]


@pytest.mark.parametrize(("case", "raw", "status", "fragment"), PROTOCOL_REFUSALS, ids=[c[0] for c in PROTOCOL_REFUSALS])
def test_protocol_level_refusals_are_json_errors(run_function, case: str, raw: bytes, status: int, fragment: str) -> None:
    run = run_function(scaling={"maxReplicas": 1})
    address = urlparse(run.url)
    outcome = send(address.hostname or "127.0.0.1", address.port or 80, Case(case, raw))
    assert outcome.status == status, outcome.raw[:500]
    assert outcome.json_error(), outcome.raw[:500]
    error = json.loads(outcome.body)["error"]
    assert fragment in error, error
    if "malformed" in fragment or "limit" in fragment:
        assert "aaaa" not in error and "inputs" not in error, "the refusal echoes the request"
    assert run.get("/v2/health/ready").status == 200
