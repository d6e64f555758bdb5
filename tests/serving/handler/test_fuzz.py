"""HTTP fuzzing of the handler runtime (the cluster's handler container: kserve + the function's
ASGI routes) in front of a real Triton (issue 14, item 10).

The digits example handler (examples/handlers/digits) receives a fixed-seed sequence of
malformed requests over raw sockets (tests/support/http_fuzz.py) plus CloudEvents with missing
or broken attributes: every request is answered with JSON (a 4xx/5xx, or a 200 where it
happened to be valid), or, when it cannot be framed at all, the connection is closed; none
hangs, and afterwards the function still classifies a digit. Counts are printed.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import random
import time

import pytest
from support.http_fuzz import Case, cases, request, send
from support.processes import free_port, wait_until

from .conftest import ROOT, Reply, post_json

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(400)]

SEED = 1515
COUNT = 300
PIXELS = [float((i * 7) % 17) for i in range(64)]


# What uvicorn answers, before any application code, to a request it cannot parse (a bad request
# line, method or header byte, broken chunked framing). In the cluster Knative's queue-proxy
# parses requests first (and answers these itself); under `aifn run` the handler runs in the
# gateway, whose protocol errors are JSON. Counted, and allowed only with exactly this body.
UVICORN_400 = b"Invalid HTTP request received."


def cloudevent_cases(rng: random.Random, count: int) -> list[Case]:
    """Binary- and structured-mode CloudEvents with attributes missing, empty or of the wrong type."""
    out = []
    for _ in range(count):
        headers = [(k, v) for k, v in [("ce-specversion", rng.choice(["1.0", "0.3", "", "9"])), ("ce-id", rng.choice(["1", ""])),
                                       ("ce-type", "scan"), ("ce-source", rng.choice(["/s", ""])),
                                       ("Content-Type", rng.choice(["application/json", "text/plain", "application/octet-stream"]))]
                   if rng.random() < 0.8]
        structured = rng.choice([
            b"{", b"[]", b'{"specversion": "1.0"}', b'{"specversion": 1, "id": [], "type": {}, "source": null}',
            b'{"specversion": "1.0", "id": "1", "type": "t", "source": "/s", "data_base64": "%%%"}',
            b'{"specversion": "1.0", "id": "1", "type": "t", "source": "/s", "data": {"pixels": "x"}}',
            json.dumps({"specversion": "1.0", "id": "1", "type": "t", "source": "/s", "data": {"pixels": PIXELS}}).encode(),
        ])
        if rng.random() < 0.5:
            body = json.dumps({"pixels": rng.choice([PIXELS, "x", [1] * 3])}).encode()
            out.append(Case("cloudevent-binary", request("POST", "/", headers, body, length=len(body))))
        else:
            out.append(Case("cloudevent-structured", request("POST", rng.choice(["/", "/invoke"]),
                                                             [("Content-Type", "application/cloudevents+json")], structured, length=len(structured))))
    return out


def fuzz(port: int, seed: int, *, uvicorn: bool) -> tuple[int, collections.Counter, list[str], float]:
    """Send the seeded cases to a function's invoke routes; (cases, tally, problems, seconds)."""
    valid = json.dumps({"pixels": PIXELS}).encode()
    rng = random.Random(seed)
    all_cases = [*cases(rng, rng.choice(["/", "/invoke"]), valid, COUNT), *cloudevent_cases(rng, 60)]
    all_cases += [Case("paths", request("POST", path, [("Content-Type", "application/json")], valid, length=len(valid)))
                  for path in ("/v1/models/digits-fn:predict", "/v2/models/digits-fn/infer", "/nope", "/" + "x" * 5000)]
    tally: collections.Counter = collections.Counter()
    problems: list[str] = []
    started = time.monotonic()
    for case in all_cases:
        outcome = send("127.0.0.1", port, case)
        tally[(case.kind, outcome.status)] += 1
        if outcome.status is None:
            if case.expect_response:
                problems.append(f"{case.kind}: closed without a response to {case.request[:300]!r}")
        elif outcome.status >= 500 or not (outcome.status == 200 or 400 <= outcome.status < 500):
            problems.append(f"{case.kind}: status {outcome.status}: {outcome.raw[:300]!r}\n  request: {case.request[:300]!r}")
        elif uvicorn and outcome.status == 400 and outcome.body == UVICORN_400:
            tally[("uvicorn-400", 400)] += 1  # see UVICORN_400
        elif "json" not in outcome.headers.get("content-type", "") or not _json(outcome.body):
            problems.append(f"{case.kind}: {outcome.status} that is not JSON: {outcome.raw[:300]!r}\n  request: {case.request[:200]!r}")
    seconds = time.monotonic() - started
    print(f"\nhandler fuzz ({'handler container' if uvicorn else 'aifn run'}): {len(all_cases)} cases (seed {seed}) in {seconds:.1f}s")
    for (kind, status), n in sorted(tally.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"  {kind:22} {status!s:5} x{n}")
    return len(all_cases), tally, problems, seconds


def test_malformed_requests_get_json_answers_and_the_handler_still_serves(start_handler) -> None:
    # A short request timeout: a body that never completes is answered 408 after it (not held forever).
    server = start_handler(ROOT / "examples" / "handlers" / "digits", "handler:lambda_handler", AIFN_REQUEST_TIMEOUT_SECONDS="3")
    warm = post_json(server.url + "/", {"pixels": PIXELS})
    assert warm.status == 200, warm.body
    _, _, problems, _ = fuzz(server.port, SEED, uvicorn=True)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:15])
    after = post_json(server.url + "/", {"pixels": PIXELS})
    assert after.status == 200 and after.json() == warm.json(), after.body
    assert server.proc.poll() is None


def test_malformed_requests_to_a_handler_under_aifn_run(tmp_path, triton_present) -> None:
    """The same cases against `aifn run` serving the digits example's handler (the gateway's aiohttp server)."""
    from .test_aifn_run import function_file

    path = function_file(tmp_path, {"entrypoint": "handler:lambda_handler"},
                         {"aifn.dev/local-handler-path": str(ROOT / "examples" / "handlers" / "digits")})
    port = free_port()
    with open(tmp_path / "run.log", "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "aifunction_operator", "run", str(path), "--port", str(port),
                                 "--read-timeout", "2s", "--idle-timeout", "300s"],
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def log() -> str:
        return (tmp_path / "run.log").read_text()[-3000:]

    def classified() -> Reply | None:
        if proc.poll() is not None:
            raise AssertionError(f"aifn run exited with {proc.returncode}:\n{log()}")
        try:
            reply = post_json(url + "/", {"pixels": PIXELS})
        except OSError:
            return None
        return reply if reply.status == 200 else None

    try:
        warm = wait_until("aifn run to classify a digit", classified, 90, interval=0.5, diagnose=log)
        _, _, problems, _ = fuzz(port, SEED + 1, uvicorn=False)
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:15])
        after = post_json(url + "/", {"pixels": PIXELS})
        assert after.status == 200 and after.json() == warm.json(), after.body
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]


def _json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _invocations(url: str) -> float:
    """aifn_handler_requests_total summed over statuses, from the handler's /metrics."""
    from .conftest import request as http_request

    text = http_request(url + "/metrics").body.decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("aifn_handler_requests_total{") and 'function="digits-fn"' in line)


def test_a_body_that_never_completes_is_408_and_a_cut_one_never_runs_the_function(start_handler) -> None:
    """Found by the fuzzing above: a client that disconnected mid-body had the function run on the
    part that arrived, and a body that stopped arriving held the request forever."""
    server = start_handler(ROOT / "examples" / "handlers" / "digits", "handler:lambda_handler", AIFN_REQUEST_TIMEOUT_SECONDS="2")
    valid = json.dumps({"pixels": PIXELS}).encode()
    assert post_json(server.url + "/", {"pixels": PIXELS}).status == 200
    before = _invocations(server.url)
    cut = send("127.0.0.1", server.port, Case("cut", request("POST", "/", [("Content-Type", "application/json")], valid[:20],
                                                              length=len(valid)), half_close=True))
    assert cut.status is None, cut.raw[:300]
    time.sleep(0.5)
    assert _invocations(server.url) == before, "the function ran on a body cut short by a disconnect"
    started = time.monotonic()
    stalled = send("127.0.0.1", server.port, Case("stalled", request("POST", "/invoke", [("Content-Type", "application/json")],
                                                                      valid[:20], length=len(valid))), timeout=15)
    assert stalled.status == 408 and stalled.json_error(), stalled.raw[:300]
    assert 1.5 < time.monotonic() - started < 10
    assert "did not arrive within 2s" in json.loads(stalled.body)["error"]
    assert _invocations(server.url) == before
