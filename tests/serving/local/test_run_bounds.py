"""`aifn run` under hostile or unlucky conditions, with a real Triton (issue 14, item 6).

- a replica whose start raises something other than TritonStartError (here a real
  IsADirectoryError: its log path is a directory) fails the waiting requests at once and the
  next start works, instead of every request waiting for startupTimeout;
- slow clients (a request head or body trickled in) are cut after --read-timeout (Envoy answers
  a JSON 408 and closes), and connections over --max-connections are closed at once;
- a gzip request body is decompressed once, by the gateway, and forwarded without its
  Content-Encoding (Triton would otherwise try to decompress plain JSON);
- JSON nested deeper than the parser allows is a 400 naming the body, not a 500;
- `spec.runtime.args` cannot move a replica off loopback (`--http-address=0.0.0.0`, also
  abbreviated as getopt allows);
- an idle ModelStreamInfer stream is ended after timeoutSeconds and gives its replica back.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support.processes import free_port, wait_until

from .conftest import MODEL_REPO, digits_request

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(240)]

INFER = "/v2/models/digits/infer"
IMAGE = [[float((r * 8 + c) % 17) for c in range(8)] for r in range(8)]


def test_replica_start_raising_oserror_fails_fast_and_the_next_start_works(run_function, tmp_path: Path) -> None:
    """A real OSError at replica start: replica-1.log exists as a directory, so opening the log fails."""
    log_dir = tmp_path / "replica-logs"
    (log_dir / "replica-1.log").mkdir(parents=True)
    run = run_function(scaling={"maxReplicas": 1, "startupTimeout": "60s"},
                       args=("--idle-timeout", "30s", "--log-dir", str(log_dir)))
    started = time.monotonic()
    first = run.post(INFER, digits_request([IMAGE]), timeout=90)
    waited = time.monotonic() - started
    assert first.status == 503, first.body
    assert waited < 10, f"the request waited {waited:.1f}s (startupTimeout) for a replica whose start had failed"
    error = first.json()["error"]
    assert "Triton could not start" in error and "IsADirectoryError" in error, error
    assert "Retry-After" in first.headers
    assert run.status()["replicas"] == [], "the failed replica stayed in the pool"
    time.sleep(2.5)  # the start backoff
    second = run.post(INFER, digits_request([IMAGE]), timeout=120)
    assert second.status == 200, second.body
    assert [r["id"] for r in run.status()["replicas"]] == [2]


def _recv_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (socket.timeout, ConnectionResetError):
        pass
    return b"".join(chunks)


def test_slow_clients_are_cut_and_connections_are_capped(run_function) -> None:
    run = run_function(args=("--idle-timeout", "30s", "--read-timeout", "2s", "--max-connections", "6"))
    port = int(run.url.rsplit(":", 1)[1])
    # Slowloris: a request head that never ends, and a body that never arrives.
    head = socket.create_connection(("127.0.0.1", port))
    head.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\n")
    body = socket.create_connection(("127.0.0.1", port))
    body.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"inputs\"")
    started = time.monotonic()
    cut = _recv_all(head, 10)
    assert cut == b"" or cut.startswith(b"HTTP/1.1 408"), cut[:200]
    assert time.monotonic() - started < 8, "a client trickling its request head kept the connection past --read-timeout"
    answer = _recv_all(body, 10)
    assert time.monotonic() - started < 8, "a client trickling its body kept the connection past --read-timeout"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request body" in answer and b"--read-timeout" in answer, answer
    head.close()
    body.close()

    # The cap: idle connections up to the limit, then the next one is closed at once, unserved
    # (Envoy's overload manager refuses it before any HTTP is read: no 503 can be written).
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    try:
        extra.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    except ConnectionResetError:
        pass
    refused = _recv_all(extra, 5)
    extra.close()
    assert refused == b"", refused[:200]
    assert time.monotonic() - started < 1.5, "a connection over --max-connections was kept open"
    for sock in held:
        sock.close()
    wait_until("the gateway to serve again (Envoy counts a connection closed once it notices)", lambda: _live(run), 10)
    assert run.post(INFER, digits_request([IMAGE])).status == 200


def _live(run) -> bool:
    try:
        return run.get("/v2/health/live").status == 200
    except OSError:  # refused: over the cap still
        return False


def test_gzip_bodies_are_forwarded_decompressed_and_bounded(run_function) -> None:
    run = run_function(args=("--idle-timeout", "30s", "--max-body-bytes", "65536"))
    plain = run.post(INFER, digits_request([IMAGE]))
    assert plain.status == 200, plain.body
    packed = run.post(INFER, gzip.compress(digits_request([IMAGE])), {"Content-Encoding": "gzip"})
    assert packed.status == 200, packed.body
    assert packed.json()["outputs"] == plain.json()["outputs"]
    bomb = gzip.compress(b'{"inputs": [' + b" " * 1_000_000 + b"]}")
    assert len(bomb) < 65536
    too_big = run.post(INFER, bomb, {"Content-Encoding": "gzip"})
    assert too_big.status == 413 and "larger than the gateway's limit" in too_big.json()["error"], too_big.body
    broken = run.post(INFER, b"not gzip at all", {"Content-Encoding": "gzip"})
    assert broken.status == 400, broken.body
    assert broken.headers["Content-Type"].startswith("application/json") and "gzip" in broken.json()["error"]
    assert run.post(INFER, digits_request([IMAGE])).status == 200


def test_deeply_nested_json_is_a_400_naming_the_body(run_function) -> None:
    run = run_function(args=("--idle-timeout", "30s"))
    deep_body = b"[" * 100_000 + b"]" * 100_000
    deep_data = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32",
                                        "data": json.loads("[" * 900 + "1" + "]" * 900)}]}).encode()
    for case, body in {"deep body": deep_body, "deep data": deep_data}.items():
        response = run.post(INFER, body)
        assert response.status == 400, f"{case}: {response.status} {response.body[:300]!r}"
        error = response.json()["error"]
        assert "nest" in error and ("body" in error or "data" in error), f"{case}: {error}"
    assert "Traceback" not in run.log()
    assert run.post(INFER, digits_request([IMAGE])).status == 200


def _listening_addresses(pid: int) -> set[str]:
    """`ip:port` of each socket `pid` listens on, from /proc (IPv4-mapped IPv6 shown as IPv4)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # LISTEN, and this process's
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # /proc prints host-order words
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            found.add(f"{ip}:{int(port, 16)}")
    return found


@pytest.mark.parametrize("args", [["--http-address=0.0.0.0", "--grpc-address", "0.0.0.0"],
                                  ["--http-addr=0.0.0.0", "--metrics-address=0.0.0.0", "--http-port=8000"]])
def test_runtime_args_cannot_rebind_a_replica_off_loopback(run_function, tmp_path: Path, args: list[str]) -> None:
    doc = {
        "apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction",
        "metadata": {"name": "rebind", "annotations": {"aifn.dev/local-model-repository": str(MODEL_REPO)}},
        "spec": {"model": {"name": "digits", "repository": "pvc://aifn-models"}, "runtime": {"args": args}},
    }
    path = tmp_path / "rebind.yaml"
    path.write_text(yaml.safe_dump(doc))
    run = run_function(function_file=path, args=("--idle-timeout", "30s"))
    response = run.post(INFER, digits_request([IMAGE]))
    assert response.status == 200, response.body
    (replica,) = run.status()["replicas"]
    addresses = _listening_addresses(replica["pid"])
    assert addresses, "found no listening socket of the replica"
    assert all(a.startswith("127.0.0.1:") for a in addresses), f"replica listens off loopback: {addresses}"
    assert replica["http"] in addresses


STREAM_CLIENT = r"""
import json, sys, threading, time
import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

channel = grpc.insecure_channel(sys.argv[1])
stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
request = service_pb2.ModelInferRequest(model_name="digits")
tensor = request.inputs.add(name="image", datatype="FP32")
tensor.shape.extend([1, 8, 8])
request.raw_input_contents.append(np.ones((1, 8, 8), np.float32).tobytes())
done = threading.Event()

def requests():
    yield request
    done.wait(float(sys.argv[2]))  # then idle: the client neither sends nor closes

report = {"responses": 0}
started = time.monotonic()
try:
    for response in stub.ModelStreamInfer(requests()):
        report["responses"] += 1
        report["error_message"] = response.error_message
        report["first_at"] = time.monotonic() - started
    report["end"] = "OK"
except grpc.RpcError as exc:
    report["end"] = [exc.code().name, exc.details()]
report["ended_at"] = time.monotonic() - started
done.set()
print(json.dumps(report))
"""


def test_idle_grpc_stream_is_ended_after_timeout_seconds_and_frees_its_replica(run_function) -> None:
    grpc_port = free_port()
    run = run_function(protocol="grpc", timeout_seconds=3, args=("--grpc-port", str(grpc_port), "--idle-timeout", "30s"))
    done = subprocess.run([sys.executable, "-c", STREAM_CLIENT, f"127.0.0.1:{grpc_port}", "40"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["responses"] == 1 and not report["error_message"], report
    assert report["end"][0] == "DEADLINE_EXCEEDED" and "idle" in report["end"][1], report
    idle_for = report["ended_at"] - report["first_at"]
    assert 2.5 < idle_for < 10, f"the idle stream ended {idle_for:.1f}s after its last message (timeoutSeconds 3)"
    status = run.status()
    assert status["in_flight"] == 0, status


def test_grpc_port_cuts_silent_connections_and_caps_them(run_function) -> None:
    grpc_port = free_port()
    run = run_function(protocol="grpc", args=("--grpc-port", str(grpc_port), "--idle-timeout", "30s",
                                              "--read-timeout", "2s", "--max-connections", "4"))
    silent = socket.create_connection(("127.0.0.1", grpc_port))  # never sends the HTTP/2 preface
    started = time.monotonic()
    _recv_all(silent, 15)  # gRPC sends GOAWAY ("handshake timeout"), then closes
    assert time.monotonic() - started < 8, "a connection that never completed its handshake outlived --read-timeout"
    silent.close()
    held = [socket.create_connection(("127.0.0.1", grpc_port)) for _ in range(4)]
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", grpc_port))
    started = time.monotonic()
    _recv_all(extra, 5)
    assert time.monotonic() - started < 1.5, "a connection over --max-connections was kept open"
    for sock in [*held, extra]:
        sock.close()
    done = subprocess.run([sys.executable, "-c", STREAM_CLIENT, f"127.0.0.1:{grpc_port}", "0"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["responses"] == 1
