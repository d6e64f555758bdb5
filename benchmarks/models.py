"""Latency and throughput of the shipped models through a real Triton on this machine.

For each model it starts the wheel's tritonserver on model_repo/, warms it up, and measures:
  single    one item per request, one request at a time (HTTP and gRPC): p50/p99, requests/s
  batch-64  64 items per request, one at a time (HTTP): p50 per request, items/s
  conc-8    one item per request, 8 clients at once (HTTP; dynamic batching merges them)
and prints the figures with ratios to the single-request HTTP throughput, side by side.

Usage: python benchmarks/models.py [digits] [co2] [minilm] [--seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from aifunction_operator.local.tritonserver import TritonProcess, find_triton

MODEL_REPO = Path(__file__).resolve().parents[1] / "model_repo"
CONCURRENCY = 8
BATCH = 64


@dataclass
class Figure:
    model: str
    scenario: str
    protocol: str
    items_per_request: int
    requests: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    items_per_s: float


def digits_inputs(module, items: int):
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32)[:items]
    tensor = module.InferInput("image", [items, 8, 8], "FP32")
    tensor.set_data_from_numpy(images)
    return [tensor]


def minilm_inputs(module, items: int):
    texts = [f"A short sentence number {i} about how serverless functions serve models." for i in range(items)]
    tensor = module.InferInput("text", [items, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
    return [tensor]


def co2_inputs(module, items: int):
    from statsmodels.datasets import co2

    monthly = co2.load_pandas().data["co2"].resample("MS").mean().interpolate(method="time").to_numpy(np.float32)
    windows = np.stack([monthly[i : i + 36] for i in range(items)])
    tensor = module.InferInput("history", [items, 36], "FP32")
    tensor.set_data_from_numpy(windows)
    return [tensor]


INPUTS: dict[str, Callable] = {"digits": digits_inputs, "co2": co2_inputs, "minilm": minilm_inputs}


def measure(make_call: Callable[[], Callable[[], object]], seconds: float, clients: int = 1) -> tuple[list[float], float]:
    """Run `clients` threads for `seconds`, each calling its own `make_call()` (a client lives in
    one thread: tritonclient.http is gevent-based); returns request latencies (s) and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    warmed, go = threading.Barrier(clients + 1), threading.Barrier(clients + 1)
    deadline: list[float] = []

    def worker() -> None:
        call = make_call()
        for _ in range(5):  # warm up this client's connection
            call()
        warmed.wait()
        go.wait()  # the main thread has set the deadline
        mine = []
        while time.perf_counter() < deadline[0]:
            start = time.perf_counter()
            call()
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    warmed.wait()
    started = time.perf_counter()
    deadline.append(started + seconds)
    go.wait()
    for t in threads:
        t.join()
    if not latencies:
        raise RuntimeError("no request completed; see the errors above")
    return latencies, time.perf_counter() - started


def figure(model: str, scenario: str, protocol: str, items: int, latencies: list[float], wall: float) -> Figure:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return Figure(
        model=model,
        scenario=scenario,
        protocol=protocol,
        items_per_request=items,
        requests=len(latencies),
        p50_ms=round(statistics.median(ordered) * 1000, 2),
        p99_ms=round(p99 * 1000, 2),
        requests_per_s=round(len(latencies) / wall, 1),
        items_per_s=round(len(latencies) * items / wall, 1),
    )


def caller(model: str, module, url: str, items: int) -> Callable[[], Callable[[], object]]:
    """A factory that, in the calling thread, makes a client and returns one inference call."""

    def make() -> Callable[[], object]:
        client = module.InferenceServerClient(url)
        inputs = INPUTS[model](module, items)
        return lambda: client.infer(model, inputs)

    return make


def bench_model(model: str, seconds: float) -> list[Figure]:
    server = TritonProcess(find_triton(), MODEL_REPO, model)
    with server:
        server.wait_ready(300)
        http, grpc = server.http_url, server.grpc_url
        scenarios = [
            ("single", "http", 1, caller(model, httpclient, http, 1), 1),
            ("single", "grpc", 1, caller(model, grpcclient, grpc, 1), 1),
            (f"batch-{BATCH}", "http", BATCH, caller(model, httpclient, http, BATCH), 1),
            (f"conc-{CONCURRENCY}", "http", 1, caller(model, httpclient, http, 1), CONCURRENCY),
        ]
        return [
            figure(model, scenario, protocol, items, *measure(make, seconds, clients))
            for scenario, protocol, items, make, clients in scenarios
        ]


def print_table(figures: list[Figure]) -> None:
    header = f"{'model':<7} {'scenario':<9} {'proto':<5} {'items/req':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'items/s':>9} {'items/s vs single':>18}"
    print(header)
    print("-" * len(header))
    for model in dict.fromkeys(f.model for f in figures):
        rows = [f for f in figures if f.model == model]
        base = next(f for f in rows if f.scenario == "single" and f.protocol == "http").items_per_s
        for f in rows:
            print(
                f"{f.model:<7} {f.scenario:<9} {f.protocol:<5} {f.items_per_request:>9} {f.p50_ms:>8.2f} "
                f"{f.p99_ms:>8.2f} {f.requests_per_s:>8.1f} {f.items_per_s:>9.1f} {f.items_per_s / base:>17.1f}x"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="{digits,co2,minilm}", help="default: all")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    models = args.models or list(INPUTS)
    unknown = sorted(set(models) - set(INPUTS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(INPUTS)}")
    if "minilm" in models and not (MODEL_REPO / "minilm" / "1" / "weights" / "model.safetensors").is_file():
        parser.error("minilm weights are missing: run `make models` first")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{args.seconds:g} s per scenario; Triton instances on CPU, 1 torch thread each; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    figures = [f for model in models for f in bench_model(model, args.seconds)]
    print_table(figures)
    print(f"load average after: {os.getloadavg()[0]:.1f} (other work on the machine skews the figures)")
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
