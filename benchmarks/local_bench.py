"""Benchmark `aifn run` against a bare tritonserver and in-process torch, side by side in one run.

    .venv/bin/python benchmarks/local_bench.py [--repeats 3] [--seconds 4] [--concurrency 1 8 64]

1. Cold start: the first request through `aifn run` from zero replicas (Envoy and the
   activator already up) versus starting a bare tritonserver, waiting for the model, and
   sending the same request.
2. Throughput and p50/p99 latency of single-digit requests at each concurrency: through
   `aifn run` (Envoy in front of one warm replica: min = max = 1, so both paths use one
   Triton), directly to that kind of Triton, and calling the TorchScript model in this
   process (no server at all). The ratios compare `aifn run` with direct Triton side by side
   (targets of issue 18: throughput >= 0.85x at each concurrency, p99 overhead <= 5 ms at 64).

Clients run in this process (asyncio + aiohttp; threads for torch) and share the machine's
CPUs with the servers, as on a laptop; figures are for comparing paths within one run.
3. Where the CPU goes: for each warm HTTP cell, the CPU each process used (from /proc, in
   cores: CPU seconds per second of load): the load generator (this process), Envoy, the
   `aifn run` Python process, and Triton (with its python-backend model processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np

from aifunction_operator.local.tritonserver import free_port

ROOT = Path(__file__).resolve().parent.parent
MODEL_REPO = ROOT / "model_repo"
MODEL = "digits"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="cold starts measured per path (median reported)")
    parser.add_argument("--seconds", type=float, default=4.0, help="load duration per concurrency and path")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--skip-cold", action="store_true", help="measure the warm paths only")
    args = parser.parse_args()
    from aifunction_operator.local.tritonserver import TritonProcess, find_triton, free_ports  # noqa: PLC0415

    install = find_triton()
    image = _one_digit()
    body = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32",
                                   "data": image.reshape(-1).tolist()}]}).encode()
    workdir = Path(tempfile.mkdtemp(prefix="aifn-bench-"))
    model = _torch_model()

    print(f"aifn local benchmark: model {MODEL}, {os.cpu_count()} CPUs, repeats {args.repeats}, "
          f"{args.seconds:.0f}s per load cell\n")
    # 1. cold starts
    gateway_cold: list[float] = []
    bare_cold: list[float] = []
    fn_file = _function_file(workdir, min_replicas=0)
    for i in range(0 if args.skip_cold else args.repeats):
        with AifnRun(fn_file, workdir / f"cold{i}") as gw:
            gateway_cold.append(_timed_post(gw.url + f"/v2/models/{MODEL}/infer", body))
        started = time.monotonic()
        proc = TritonProcess(install, MODEL_REPO, MODEL, ports=free_ports(), log_path=workdir / f"bare{i}.log").start()
        try:
            proc.wait_ready(300)
            _post(f"http://{proc.http_url}/v2/models/{MODEL}/infer", body)
            bare_cold.append(time.monotonic() - started)
        finally:
            proc.stop()
    if not args.skip_cold:
        g, b = statistics.median(gateway_cold), statistics.median(bare_cold)
        print("cold start, seconds to the first answer (median; all runs)")
        print(f"  aifn run (Envoy up, zero replicas)     {g:6.2f}   {_runs(gateway_cold)}")
        print(f"  bare tritonserver start + load + infer {b:6.2f}   {_runs(bare_cold)}")
        print(f"  ratio aifn run / bare                  {g / b:6.2f}x\n")

    # 2. warm throughput and latency
    rows: list[tuple[int, str, float, float, float]] = []
    cpu: dict[tuple[int, str], dict[str, float]] = {}
    warm_fn = _function_file(workdir, min_replicas=1)
    with AifnRun(warm_fn, workdir / "warm") as gw:
        _post(gw.url + f"/v2/models/{MODEL}/infer", body)
        proc = TritonProcess(install, MODEL_REPO, MODEL, ports=free_ports(), log_path=workdir / "direct.log").start()
        try:
            proc.wait_ready(300)
            direct_url = f"http://{proc.http_url}/v2/models/{MODEL}/infer"
            _post(direct_url, body)
            assert gw.proc is not None and proc.pid is not None
            for concurrency in args.concurrency:
                for path, url, roots in (("aifn run", gw.url + f"/v2/models/{MODEL}/infer", [gw.proc.pid]),
                                         ("triton", direct_url, [proc.pid])):
                    before = _cpu_by_process(roots)
                    started = time.monotonic()
                    rows.append((concurrency, path, *_load_http(url, body, concurrency, args.seconds)))
                    cpu[(concurrency, path)] = _cores(before, _cpu_by_process(roots), time.monotonic() - started)
        finally:
            proc.stop()
    for concurrency in args.concurrency:
        rows.append((concurrency, "torch", *_load_torch(model, image, concurrency, args.seconds)))

    print("warm, single-digit requests: throughput and latency")
    print(f"  {'conc':>4}  {'path':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for concurrency, path, rps, p50, p99 in sorted(rows, key=lambda r: (r[0], PATHS.index(r[1]))):
        print(f"  {concurrency:>4}  {path:<9} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f}")
    print("\nratios (aifn run vs direct Triton; aifn run vs in-process torch)")
    print(f"  {'conc':>4}  {'req/s aifn/triton':>18} {'p50 aifn/triton':>16} {'p99 aifn/triton':>16} "
          f"{'p99 overhead ms':>16} {'req/s aifn/torch':>17}")
    by = {(c, p): (r, p50, p99) for c, p, r, p50, p99 in rows}
    for concurrency in args.concurrency:
        run, tr, to = by[(concurrency, "aifn run")], by[(concurrency, "triton")], by[(concurrency, "torch")]
        print(f"  {concurrency:>4}  {run[0] / tr[0]:>18.2f} {run[1] / tr[1]:>16.2f} {run[2] / tr[2]:>16.2f} "
              f"{run[2] - tr[2]:>16.2f} {run[0] / to[0]:>17.3f}")
    print(f"\nwhere the CPU goes during each warm cell, in cores ({os.cpu_count()} on this machine)")
    print(f"  {'conc':>4}  {'path':<9} {'client':>7} {'envoy':>7} {'aifn py':>8} {'triton':>7} {'total':>7}")
    for (concurrency, path), used in sorted(cpu.items(), key=lambda item: (item[0][0], PATHS.index(item[0][1]))):
        print(f"  {concurrency:>4}  {path:<9} " + " ".join(f"{used.get(k, 0.0):>{w}.2f}" for k, w in
                                                        (("client", 7), ("envoy", 7), ("aifn py", 8), ("triton", 7)))
              + f" {sum(used.values()):>7.2f}")
    return 0


def _cpu_by_process(roots: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) of this process (the client) and of each root and its descendants, by role:
    client, envoy, aifn py, triton."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, str, float]] = {}  # pid -> (parent, command, cpu seconds)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            command, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
            stats[int(entry.name)] = (int(rest[1]), command, (int(rest[11]) + int(rest[12])) / tick)
    used: dict[str, float] = {"client": stats[os.getpid()][2]}
    for pid, (_, command, seconds) in stats.items():
        ancestor = pid
        while ancestor not in roots and ancestor in stats and ancestor > 1:
            ancestor = stats[ancestor][0]
        if ancestor in roots:
            # Triton's python-backend model processes (triton_python_backend_stub) count as Triton.
            role = "envoy" if command.startswith("envoy") else "triton" if command.startswith("triton") else "aifn py"
            used[role] = used.get(role, 0.0) + seconds
    return used


def _cores(before: dict[str, float], after: dict[str, float], elapsed: float) -> dict[str, float]:
    return {role: (after.get(role, 0.0) - before.get(role, 0.0)) / elapsed for role in after}


PATHS = ["aifn run", "triton", "torch"]


class AifnRun:
    """`aifn run` in a subprocess on a free port, stopped with SIGINT on exit."""

    def __init__(self, function_file: Path, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.function_file = function_file
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AifnRun:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "aifn-run.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aifunction_operator", "run", str(self.function_file), "--port", str(self.port),
                 "--idle-timeout", "600s", "--queue-limit", "1024", "--log-dir", str(self.log_dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/v2/health/live", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        # minReplicas 1: wait until the warm replica is ready, so loads measure serving only
        while time.monotonic() < deadline:
            with urllib.request.urlopen(self.url + "/aifn/status", timeout=5) as resp:
                status = json.loads(resp.read())
            if status["policy"]["min_replicas"] == 0 or any(r["state"] == "ready" for r in status["replicas"]):
                break
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def _function_file(workdir: Path, *, min_replicas: int) -> Path:
    path = workdir / f"digits-min{min_replicas}.yaml"
    path.write_text(json.dumps({
        "apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction",
        "metadata": {"name": "digits", "annotations": {"aifn.dev/local-model-repository": str(MODEL_REPO)}},
        "spec": {"model": {"name": MODEL, "repository": "pvc://aifn-models"},
                 "scaling": {"minReplicas": min_replicas, "maxReplicas": 1, "containerConcurrency": 0}},
    }))
    return path


def _one_digit() -> np.ndarray:
    from sklearn.datasets import load_digits  # noqa: PLC0415

    return load_digits().images[-1].astype(np.float32)


def _post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as resp:
        return resp.read()


def _timed_post(url: str, body: bytes) -> float:
    started = time.monotonic()
    _post(url, body)
    return time.monotonic() - started


def _load_http(url: str, body: bytes, concurrency: int, seconds: float) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) with `concurrency` clients posting back to back for `seconds`."""

    async def run() -> list[float]:
        latencies: list[float] = []
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            deadline = time.monotonic() + seconds

            async def client() -> None:
                while time.monotonic() < deadline:
                    sent = time.monotonic()
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"{url}: HTTP {resp.status}")
                    latencies.append(time.monotonic() - sent)

            await asyncio.gather(*(client() for _ in range(concurrency)))
        return latencies

    started = time.monotonic()
    latencies = asyncio.run(run())
    return _summary(latencies, time.monotonic() - started)


def _torch_model():  # type: ignore[no-untyped-def]
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    model = torch.jit.load(str(MODEL_REPO / MODEL / "1" / "model.pt")).eval()
    return model


def _load_torch(model, image: np.ndarray, concurrency: int, seconds: float) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    import torch  # noqa: PLC0415

    x = torch.from_numpy(image.reshape(1, 8, 8))
    deadline = time.monotonic() + seconds

    def client() -> list[float]:
        out = []
        with torch.inference_mode():
            while time.monotonic() < deadline:
                sent = time.monotonic()
                model(x).argmax(dim=1)
                out.append(time.monotonic() - sent)
        return out

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = [t for part in pool.map(lambda _: client(), range(concurrency)) for t in part]
    return _summary(latencies, time.monotonic() - started)


def _summary(latencies: list[float], elapsed: float) -> tuple[float, float, float]:
    array = np.array(latencies) * 1000
    return len(latencies) / elapsed, float(np.percentile(array, 50)), float(np.percentile(array, 99))


def _runs(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


if __name__ == "__main__":
    sys.exit(main())
