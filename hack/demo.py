"""`make demo`: serve examples/digits.yaml with `aifn run` and a real Triton, and send it real digits.

Shows, in about a minute: no Triton before the first request; held-out handwritten digits
(scikit-learn's load_digits, the split the model was never trained on) classified through
the gateway with tritonclient.http, predictions beside the true labels; the cold start's
stages; the scale to zero once the function is idle; a clean stop. Exits non-zero if any
of that does not happen.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from aifunction_operator.local.tritonserver import child_pids

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.processes import free_port, wait_until  # noqa: E402

FUNCTION = ROOT / "examples" / "digits.yaml"
IDLE_TIMEOUT = "5s"
BATCH = 20
PARALLEL = 6


def main() -> int:
    images, labels = held_out_digits()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkdtemp(prefix="aifn-demo-")) / "aifn-run.log"
    command = [sys.executable, "-m", "aifunction_operator", "run", str(FUNCTION.relative_to(ROOT)),
               "--port", str(port), "--idle-timeout", IDLE_TIMEOUT]
    print("== aifn demo: examples/digits.yaml on this machine, real Triton behind `aifn run` ==")
    print(f"[1/5] starting: aifn {' '.join(command[3:])}")
    started = time.monotonic()
    with open(log_path, "wb") as log:
        gateway = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until("the gateway to start", lambda: live(url, gateway, log_path), 30)
        time.sleep(0.5)
        tritons = triton_pids(gateway.pid)
        print(f"      gateway up at {url} in {time.monotonic() - started:.1f}s; Triton processes running: {len(tritons)}")
        check(not tritons, "a Triton process runs before the first request")

        print(f"[2/5] sending {len(images)} held-out digits ({len(images) // BATCH} requests of {BATCH}, "
              f"{PARALLEL} at a time) through the gateway with tritonclient.http")
        predictions, first_latency, warm = classify(url, images)
        status = get_json(url + "/aifn/status")
        cold = status["last_cold_start"] or {}
        print(f"      first request answered after {first_latency:.2f}s: a cold start from zero")
        print("      cold-start stages (seconds after the replica was started): "
              + " | ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in cold.items() if k != "replica" and v is not None))
        warm_count = len(images) - BATCH
        print(f"      warm: the other {warm_count} digits in {warm * 1000:.0f} ms ({warm_count / warm:.0f} digits/s); "
              f"Triton processes now: {len(triton_pids(gateway.pid))}")

        print("[3/5] predictions beside the true labels")
        show_predictions(images, labels, predictions)
        accuracy = float(np.mean(predictions == labels))
        print(f"      accuracy on {len(labels)} held-out digits: {accuracy:.1%} "
              f"({int(np.sum(predictions == labels))}/{len(labels)})")
        check(accuracy >= 0.95, f"accuracy {accuracy:.1%} is below 95%")

        to_zero = status["policy"]["scale_to_zero_after"]
        print(f"[4/5] idle now; scale to zero after {to_zero:.0f}s without requests "
              f"(--idle-timeout {IDLE_TIMEOUT}, scaleToZeroRetention in the function)")
        idle_since = time.monotonic()
        reported = [0.0]
        wait_until("Triton to stop", lambda: progress(gateway.pid, idle_since, reported), to_zero + 30)
        print(f"      Triton stopped after {time.monotonic() - idle_since:.1f}s idle; Triton processes running: "
              f"{len(triton_pids(gateway.pid))}")
    except (DemoFailed, TimeoutError) as exc:  # TimeoutError: a wait_until ran out
        print(f"\ndemo FAILED: {exc}\n--- aifn run log ---\n{log_path.read_text()[-4000:]}")
        stop(gateway)
        return 1
    print("[5/5] stopping aifn run with Ctrl-C (SIGINT)")
    code = stop(gateway)
    print(f"      exited with status {code}; gateway log (replica lifecycle):")
    for line in log_path.read_text().splitlines():
        if "replica" in line or "stopped" in line:
            print(f"      | {line}")
    if code != 0:
        print("demo FAILED: aifn run did not exit cleanly")
        return 1
    print(f"== demo done in {time.monotonic() - started:.0f}s ==")
    return 0


class DemoFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailed(message)


def held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    """The held-out split the model card's accuracy is measured on."""
    sys.path.insert(0, str(ROOT / "model_repo"))
    from digits_training import digits_split  # noqa: PLC0415 - lives in model_repo/

    split = digits_split()
    return split.images[split.test_idx].astype(np.float32), split.labels[split.test_idx]


def classify(url: str, images: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Labels for `images` (first request alone: the cold start), its latency, the warm requests' seconds."""
    import tritonclient.http as httpclient  # noqa: PLC0415

    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"), concurrency=PARALLEL,
                                              connection_timeout=300, network_timeout=300)
    batches = [images[i : i + BATCH] for i in range(0, len(images), BATCH)]

    def request(batch: np.ndarray) -> list[Any]:
        tensor = httpclient.InferInput("image", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        return [tensor]

    started = time.monotonic()
    first = client.infer("digits", request(batches[0]))
    first_latency = time.monotonic() - started
    labels = [first.as_numpy("label").reshape(-1)]
    warm_started = time.monotonic()
    for group in range(1, len(batches), PARALLEL):
        pending = [client.async_infer("digits", request(b)) for b in batches[group : group + PARALLEL]]
        for item in pending:
            labels.append(item.get_result().as_numpy("label").reshape(-1))
    warm_seconds = time.monotonic() - warm_started
    client.close()
    return np.concatenate(labels), first_latency, warm_seconds


def show_predictions(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> None:
    shown = 30
    print("      true:      " + " ".join(str(v) for v in labels[:shown]))
    print("      predicted: " + " ".join(str(v) for v in predictions[:shown]) + f"   (first {shown} of {len(labels)})")
    wrong = np.flatnonzero(predictions != labels)
    picks = list(wrong[:2]) + [i for i in range(3) if i not in wrong][: 4 - min(len(wrong), 2)]
    art = [draw(images[i]) for i in picks]
    print("      " + "   ".join(f"true {labels[i]} pred {predictions[i]}{'  ✗' if i in wrong else '   '}".ljust(16) for i in picks))
    for row in range(8):
        print("      " + "   ".join(a[row].ljust(16) for a in art))


def draw(image: np.ndarray) -> list[str]:
    shades = " .:-=+*#%@"
    return ["".join(shades[min(9, int(v * 10 / 17))] * 2 for v in row) for row in image]


def progress(gateway_pid: int, since: float, last_report: list[float]) -> bool:
    running = triton_pids(gateway_pid)
    idle = time.monotonic() - since
    if running and idle - last_report[0] >= 5:
        last_report[0] = idle
        print(f"      {idle:4.0f}s idle, Triton processes running: {len(running)}", flush=True)
    time.sleep(0.2)
    return not running


def live(url: str, gateway: subprocess.Popen[bytes], log_path: Path) -> bool:
    if gateway.poll() is not None:
        raise DemoFailed(f"aifn run exited with status {gateway.returncode}")
    try:
        with urllib.request.urlopen(url + "/v2/health/live", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def triton_pids(parent: int) -> list[int]:
    """tritonserver processes started by the gateway (found in /proc)."""
    return child_pids(parent, "tritonserver")


def stop(gateway: subprocess.Popen[bytes]) -> int:
    if gateway.poll() is None:
        gateway.send_signal(signal.SIGINT)
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(gateway.pid, signal.SIGKILL)
            gateway.wait()
    return gateway.returncode


if __name__ == "__main__":
    sys.exit(main())
