"""The handler path against direct Triton and against the seed's load-per-request pattern, side by side.

One run starts a real Triton serving model_repo/digits and, one after the other, the real
handler container process (`python -m aifunction_operator.handler`, kserve ModelServer) with
each handler in benchmarks/handlers/bench_handlers.py. A closed-loop Go load generator
(benchmarks/loadgen, built on first use) sends one digit per request over keep-alive
connections at each concurrency, and the table prints requests/s, p50, p99 and the ratio
to direct Triton at the same concurrency:

  triton          POST /v2/models/digits/infer (KServe v2 JSON) straight to Triton
  handler         the trivial Lambda handler (sync, context.infer) via the handler runtime
  handler-async   the same as `async def` with `await context.ainfer`
  handler-inline  `handler` run inline on the event loop (AIFN_HANDLER_EXECUTION=inline, greenlet)
  handler-tc      `handler` with infer calls through tritonclient's asyncio client (aiohttp)
                  instead of the runtime's lean keep-alive client (AIFN_TRITON_CLIENT=tritonclient)
  noop            the handler runtime answering without calling the model (its own floor)
  seed            a Lambda handler that loads the TorchScript model on every request

Everything (Triton, the handler, the load generator) shares this machine's CPUs, so the
ratio is what the handler's extra Python HTTP hop costs when CPU is the limit. All handler
processes run for the whole benchmark and the points are measured in interleaved rounds
(every variant once per round); the table shows medians, and each ratio is the median of
per-round ratios, so load from other processes on the machine skews all variants alike.

Usage: python benchmarks/handler_bench.py [--seconds 4] [--rounds 3] [--concurrency 1 16 64]
       [--variants triton handler ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from aifunction_operator.local.tritonserver import TritonProcess, find_triton, free_port

ROOT = Path(__file__).resolve().parents[1]
MODEL_REPO = ROOT / "model_repo"
HANDLERS = Path(__file__).resolve().parent / "handlers"
LOADGEN_SRC = Path(__file__).resolve().parent / "loadgen"
# variant -> (entrypoint, extra environment); None = straight to Triton
VARIANTS: dict[str, tuple[str, dict[str, str]] | None] = {
    "triton": None,
    "handler": ("bench_handlers:forward", {}),
    "handler-async": ("bench_handlers:forward_async", {}),
    "handler-inline": ("bench_handlers:forward", {"AIFN_HANDLER_EXECUTION": "inline"}),
    "handler-tc": ("bench_handlers:forward", {"AIFN_TRITON_CLIENT": "tritonclient"}),
    "noop": ("bench_handlers:noop", {}),
    "seed": ("bench_handlers:seed", {}),
}
TARGET_RATIO = 0.7
TARGET_CONCURRENCY = 16


@dataclass
class Row:
    variant: str
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    ratio: float | None = None


def build_loadgen() -> Path:
    """Compile benchmarks/loadgen (standard library only, no network) into the cache."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        sys.exit("handler_bench: the load generator is written in Go; install Go (make tools needs it too)")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aifn" / "bin"
    cache.mkdir(parents=True, exist_ok=True)
    binary = cache / "aifn-loadgen"
    source = LOADGEN_SRC / "main.go"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run([go, "build", "-o", str(binary), "."], cwd=LOADGEN_SRC, check=True,
                       env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
    return binary


def load(loadgen: Path, url: str, body: Path, concurrency: int, seconds: float) -> dict:
    done = subprocess.run(
        [str(loadgen), "-url", url, "-body", str(body), "-c", str(concurrency), "-d", f"{seconds}s", "-warmup", "1s"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout)


def start_handler(
    entrypoint: str, extra_env: dict[str, str], triton_url: str, log_dir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        **extra_env,
        "AIFN_HANDLER_ENTRYPOINT": entrypoint,
        "AIFN_HANDLER_PATH": str(HANDLERS),
        "AIFN_TRITON_URL": triton_url,
        "AIFN_MODEL_NAME": "digits",
        "AIFN_FUNCTION_NAME": "digits-bench",
        "PORT": str(port),
        "BENCH_MODEL_PT": str(MODEL_REPO / "digits" / "1" / "model.pt"),
    }
    log = open(log_dir / f"{entrypoint.split(':')[1]}-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "aifunction_operator.handler"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"handler {entrypoint} exited; see {log.name}")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as resp:
                if resp.status == 200:
                    warm_up(url)
                    return proc, url
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"handler {entrypoint} not ready in 90s; see {log.name}")


def warm_up(url: str) -> None:
    """One request before measuring, so first-use imports (torch for `seed`) are not measured."""
    from sklearn.datasets import load_digits

    body = json.dumps({"pixels": load_digits().images[0].ravel().tolist()}).encode()
    request = urllib.request.Request(f"{url}/", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=180) as resp:
        resp.read()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def write_bodies(directory: Path) -> tuple[Path, Path]:
    from sklearn.datasets import load_digits

    pixels = load_digits().images[3].ravel().tolist()
    v2 = directory / "v2.json"
    v2.write_text(json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32", "data": pixels}]}))
    event = directory / "event.json"
    event.write_text(json.dumps({"pixels": pixels}))
    return v2, event


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per point (after 1 s warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if "triton" not in args.variants:
        args.variants.insert(0, "triton")

    loadgen = build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="aifn-handler-bench-"))
    v2_body, event_body = write_bodies(work)
    triton = TritonProcess(find_triton(), MODEL_REPO, "digits", log_path=work / "tritonserver.log")
    samples: dict[tuple[str, int], list[dict]] = {}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{args.rounds} interleaved rounds of {args.seconds:g} s per point; logs in {work}", flush=True)
    handlers: dict[str, subprocess.Popen[bytes]] = {}
    with triton:
        triton.wait_ready(180)
        targets: dict[str, tuple[str, Path]] = {}
        try:
            for variant in args.variants:
                spec = VARIANTS[variant]
                if spec is None:
                    targets[variant] = (f"http://{triton.http_url}/v2/models/digits/infer", v2_body)
                else:
                    handlers[variant], base = start_handler(spec[0], spec[1], triton.http_url, work)
                    targets[variant] = (f"{base}/", event_body)
            for round_no in range(1, args.rounds + 1):
                for concurrency in args.concurrency:
                    for variant in args.variants:
                        url, body = targets[variant]
                        result = load(loadgen, url, body, concurrency, args.seconds)
                        samples.setdefault((variant, concurrency), []).append(result)
                        bad = result["errors"] + result["non_2xx"]
                        note = f"  {bad} errors, first: {result.get('first_error')}" if bad else ""
                        print(f"  round {round_no} {variant:<14} c={concurrency:<3} {result['rps']:8.0f} req/s{note}", flush=True)
        finally:
            for proc in handlers.values():
                stop(proc)
    rows = summarize(samples, args.variants, args.concurrency)
    print_table(rows)
    print_verdict(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def summarize(samples: dict[tuple[str, int], list[dict]], variants: list[str], levels: list[int]) -> list[Row]:
    """Median figures per variant and concurrency; the ratio is the median of per-round ratios
    (each round's handler figure over the same round's direct-Triton figure)."""
    rows = []
    for concurrency in levels:
        direct = samples[("triton", concurrency)]
        for variant in variants:
            runs = samples[(variant, concurrency)]
            ratios = [r["rps"] / d["rps"] for r, d in zip(runs, direct) if d["rps"]]
            rows.append(Row(
                variant, concurrency,
                requests=sum(r["requests"] for r in runs),
                rps=statistics.median(r["rps"] for r in runs),
                p50_ms=statistics.median(r["p50_ms"] for r in runs),
                p99_ms=statistics.median(r["p99_ms"] for r in runs),
                errors=sum(r["errors"] + r["non_2xx"] for r in runs),
                ratio=statistics.median(ratios) if ratios else None,
            ))
    rows.sort(key=lambda r: (list(VARIANTS).index(r.variant), r.concurrency))
    return rows


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'variant':<14} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>9} {'errors':>6} {'x triton':>9}")
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        print(f"{r.variant:<14} {r.concurrency:>4} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>9.2f} {r.errors:>6} {ratio:>9}")


def print_verdict(rows: list[Row]) -> None:
    def rps(variant: str, concurrency: int) -> float | None:
        return next((r.rps for r in rows if r.variant == variant and r.concurrency == concurrency), None)

    def ratio(variant: str, concurrency: int) -> float | None:
        return next((r.ratio for r in rows if r.variant == variant and r.concurrency == concurrency), None)

    direct, handler = rps("triton", TARGET_CONCURRENCY), rps("handler", TARGET_CONCURRENCY)
    print()
    for variant, label in (("handler", "trivial sync Lambda handler"), ("handler-async", "trivial async handler")):
        measured, share = rps(variant, TARGET_CONCURRENCY), ratio(variant, TARGET_CONCURRENCY)
        if measured and share is not None:
            verdict = "met" if share >= TARGET_RATIO else "NOT met"
            print(f"{label} at c={TARGET_CONCURRENCY}: {measured:.0f} req/s, {share:.2f}x direct Triton "
                  f"({direct:.0f} req/s); target >= {TARGET_RATIO}x: {verdict}")
    tc = rps("handler-tc", TARGET_CONCURRENCY)
    if tc and direct:
        print(f"the sync handler with tritonclient's aio client at c={TARGET_CONCURRENCY}: {tc:.0f} req/s, "
              f"{ratio('handler-tc', TARGET_CONCURRENCY):.2f}x direct Triton")
    seed = rps("seed", TARGET_CONCURRENCY)
    if seed and handler:
        print(f"handler vs load-per-request (seed) at c={TARGET_CONCURRENCY}: {handler / seed:.1f}x the throughput")
    noop = rps("noop", TARGET_CONCURRENCY)
    if noop and direct:
        print(f"the runtime alone (noop, no model call) at c={TARGET_CONCURRENCY}: {noop:.0f} req/s, "
              f"{ratio('noop', TARGET_CONCURRENCY):.2f}x direct Triton")


if __name__ == "__main__":
    sys.exit(main())
