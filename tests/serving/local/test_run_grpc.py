"""`aifn run` for a function with protocol grpc: Triton's gRPC API through the gateway, real Triton behind it.

The client runs in a subprocess: tritonclient.grpc and kserve cannot be imported into one
process, and other tiers import kserve.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.processes import free_port, wait_until

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(240)]

CLIENT = r"""
import json, queue, sys
import numpy as np
import tritonclient.grpc as g
from tritonclient.utils import InferenceServerException

client = g.InferenceServerClient(sys.argv[1])
report = {"live": client.is_server_live(), "ready": client.is_server_ready()}
images = g.InferInput("image", [2, 8, 8], "FP32")
images.set_data_from_numpy(np.full((2, 8, 8), 8.0, np.float32))
report["labels"] = client.infer("digits", [images]).as_numpy("label").reshape(-1).tolist()

def error(call):
    try:
        call()
    except InferenceServerException as exc:
        return [exc.status(), exc.message()]
    return None

report["unknown_model"] = error(lambda: client.infer("nosuch", [images]))
flat = g.InferInput("image", [1, 64], "FP32")
flat.set_data_from_numpy(np.ones((1, 64), np.float32))
report["wrong_shape"] = error(lambda: client.infer("digits", [flat]))
report["load"] = error(lambda: client.load_model("digits"))
results = queue.Queue()
client.start_stream(callback=lambda result, error: results.put((result, error)))
for _ in range(3):
    client.async_stream_infer("digits", [images])
streamed = []
for _ in range(3):
    result, err = results.get(timeout=60)
    streamed.append(str(err) if err else result.as_numpy("label").reshape(-1).tolist())
client.stop_stream()
report["stream"] = streamed
big = g.InferInput("image", [300, 8, 8], "FP32")  # 76,800 bytes of data: over --max-body-bytes 65536
big.set_data_from_numpy(np.ones((300, 8, 8), np.float32))
report["too_big"] = error(lambda: client.infer("digits", [big]))
print(json.dumps(report))
"""


def test_grpc_function_scales_from_zero_and_checks_requests(run_function) -> None:
    grpc_port = free_port()
    run = run_function(protocol="grpc", args=("--grpc-port", str(grpc_port), "--idle-timeout", "3s", "--max-body-bytes", "65536"))
    assert run.triton_pids() == []
    done = subprocess.run([sys.executable, "-c", CLIENT, f"127.0.0.1:{grpc_port}"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["live"] and report["ready"]
    assert len(report["labels"]) == 2
    # Warm, Envoy sends the call to Triton, whose NOT_FOUND says "unknown model: 'nosuch'" (Envoy cannot read
    # the model name inside the protobuf message); cold, the Python side answers "unknown model 'nosuch'".
    assert report["unknown_model"][0] == "StatusCode.NOT_FOUND", report["unknown_model"]
    assert "unknown model" in report["unknown_model"][1] and "'nosuch'" in report["unknown_model"][1]
    assert report["wrong_shape"][0] == "StatusCode.INVALID_ARGUMENT" and "unexpected shape" in report["wrong_shape"][1]
    assert report["load"][0] == "StatusCode.UNIMPLEMENTED"
    assert report["stream"] == [report["labels"]] * 3
    assert report["too_big"][0] == "StatusCode.RESOURCE_EXHAUSTED" and "limit of 65536 bytes" in report["too_big"][1]
    assert run.status()["last_cold_start"]["first_response"] > 0
    metrics = run.get("/metrics").body.decode()
    assert 'aifn_requests_total{code="OK",endpoint="grpc-ModelInfer",function="fn0"} 1.0' in metrics
    assert 'aifn_requests_total{code="NOT_FOUND",endpoint="grpc-ModelInfer",function="fn0"} 1.0' in metrics
    assert 'aifn_requests_total{code="INVALID_ARGUMENT",endpoint="grpc-ModelInfer",function="fn0"} 1.0' in metrics
    wait_until("Triton to stop after the idle timeout", lambda: run.triton_pids() == [], 20)
