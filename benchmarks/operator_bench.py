"""Operator throughput on a real control plane (etcd + kube-apiserver + kube-controller-manager).

For each N: start `aifn operator` (a child process, as users run it), create N AIFunctions with
8 client threads, and record when each one's Knative Service appears (a watch). Then apply the
same N pre-rendered Services directly with one client and the same 8 threads: that is the
apiserver's own write limit on this machine, and the ratio says what the operator costs on top.

    .venv/bin/python benchmarks/operator_bench.py            # N = 100 and 1000
    .venv/bin/python benchmarks/operator_bench.py -n 200     # other sizes

Needs `make tools` (bin/). Prints one table; nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from kubernetes import client, watch  # noqa: E402

from aifunction_operator.render.config import OperatorConfig  # noqa: E402
from aifunction_operator.render import render  # noqa: E402
from aifunction_operator.spec import parse_function  # noqa: E402
from support.controlplane import ControlPlane  # noqa: E402
from support.kube_client import KS_GROUP, KS_PLURAL, KS_VERSION, TestClient, function  # noqa: E402
from support.operator_process import OperatorProcess  # noqa: E402
from support.processes import wait_until  # noqa: E402

THREADS = 8


@dataclass
class Run:
    n: int
    create_seconds: float  # client time to create N AIFunctions
    all_services_seconds: float  # first create -> last Service seen
    all_status_seconds: float  # first create -> every function has status for its generation
    p50: float
    p99: float
    peak_rss_mib: float
    cpu_seconds: float  # operator user+system CPU time for the run
    mean_pass: float  # mean duration of one reconcile pass (render, apply, status), from /metrics
    passes: int
    direct_seconds: float  # N pre-rendered Services applied directly
    same_writes_seconds: float  # direct + one status patch and one annotation patch per function: the operator's write set


class ServiceWatch:
    """Records when each Knative Service in a namespace is first seen (server-side watch)."""

    def __init__(self, kube: TestClient, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ServiceWatch:
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        listing = self.kube.custom.list_namespaced_custom_object(KS_GROUP, KS_VERSION, self.namespace, KS_PLURAL)
        version = listing["metadata"]["resourceVersion"]
        self._ready.set()
        while not self._stop.is_set():
            stream = watch.Watch().stream(self.kube.custom.list_namespaced_custom_object, KS_GROUP, KS_VERSION, self.namespace, KS_PLURAL, resource_version=version, timeout_seconds=5)
            for event in stream:
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "ADDED":
                    self.seen.setdefault(obj["metadata"]["name"], time.monotonic())

    def stop(self) -> None:
        self._stop.set()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_parallel(items: list[Any], call: Callable[[Any], Any]) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(call, items))
    return time.monotonic() - started


def bench(plane: ControlPlane, kube: TestClient, n: int, workdir: Path) -> Run:
    namespace, direct_ns = f"bench-{n}", f"bench-direct-{n}"
    for ns in (namespace, direct_ns):
        plane.kubectl("create", "namespace", ns)
    operator = OperatorProcess(plane.kubeconfig, workdir / f"operator-{n}.log", [f"--namespace={namespace}", f"--knative-namespace={namespace}", "--standalone"]).start()
    services = ServiceWatch(kube, namespace).start()
    bodies = [function(f"fn-{i:04d}") for i in range(n)]
    created: dict[str, float] = {}

    def create(body: dict[str, Any]) -> None:
        kube.create_function(namespace, body)
        created[body["metadata"]["name"]] = time.monotonic()

    cpu_before = cpu_seconds(operator.pid)
    first = time.monotonic()
    create_seconds = in_parallel(bodies, create)
    wait_until(f"{n} Services", lambda: len(services.seen) >= n, timeout=60 + n * 0.5, interval=0.2, diagnose=operator.log_tail)
    all_services = max(services.seen.values()) - first
    wait_until(f"{n} statuses", lambda: all((f.get("status") or {}).get("observedGeneration") == 1 for f in kube.list_functions(namespace)), timeout=60 + n * 0.5, interval=0.5)
    all_status = time.monotonic() - first
    latencies = [services.seen[name] - created[name] for name in created]
    rss = peak_rss_mib(operator.pid)
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in operator.metrics().splitlines() if line.startswith("aifn_reconcile_duration_seconds_")}
    passes = int(samples.get("aifn_reconcile_duration_seconds_count", 0))
    mean_pass = samples.get("aifn_reconcile_duration_seconds_sum", 0.0) / max(1, passes)
    cpu = cpu_seconds(operator.pid) - cpu_before
    services.stop()
    operator.stop()

    config = OperatorConfig()
    rendered = [render(parse_function({**b, "metadata": {**b["metadata"], "namespace": direct_ns}}), config)[0] for b in bodies]
    api = kube.api

    def apply(svc: dict[str, Any]) -> None:
        api.call_api(*api.param_serialize("PATCH", f"/apis/{KS_GROUP}/{KS_VERSION}/namespaces/{direct_ns}/{KS_PLURAL}/{svc['metadata']['name']}", query_params=[("fieldManager", "bench"), ("force", "true")], header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"}, body=svc, auth_settings=["BearerToken"])[:4]).read()

    direct = in_parallel(rendered, apply)
    assert len(kube.list_services(direct_ns)) == n

    def patch_status(body: dict[str, Any]) -> None:
        kube.custom.patch_namespaced_custom_object_status("aifn.dev", "v1alpha1", namespace, "aifunctions", body["metadata"]["name"], {"status": {"reason": "Benchmark"}})

    def patch_annotation(body: dict[str, Any]) -> None:
        kube.patch_function(namespace, body["metadata"]["name"], {"metadata": {"annotations": {"aifn.dev/benchmark": "1"}}})

    same_writes = direct + in_parallel(bodies, patch_status) + in_parallel(bodies, patch_annotation)
    for ns in (namespace, direct_ns):
        plane.kubectl("delete", "namespace", ns, "--wait=false")
    return Run(n, create_seconds, all_services, all_status, statistics.median(latencies), percentile(latencies, 0.99), rss, cpu, mean_pass, passes, direct, same_writes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, action="append", help="number of functions (repeatable; default 100 and 1000)")
    args = parser.parse_args()
    sizes = args.n or [100, 1000]
    with tempfile.TemporaryDirectory(prefix="aifn-bench-") as tmp, ControlPlane(workdir=Path(tmp) / "cp") as plane:
        kube = TestClient(plane.kubeconfig, pool_size=THREADS * 2)
        runs = [bench(plane, kube, n, Path(tmp)) for n in sizes]
    print(f"\nOperator benchmark ({THREADS} client threads, real etcd + kube-apiserver, all on this machine)")
    header = f"{'N':>6} {'create N fns':>13} {'all Services':>13} {'all status':>11} {'fn/s':>7} {'p50 lat':>8} {'p99 lat':>8} {'op RSS':>8} {'op CPU':>7} {'passes':>7} {'mean pass':>10} {'direct N ksvc':>14} {'direct/s':>9} {'ratio':>6} {'same writes':>12} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for r in runs:
        print(f"{r.n:>6} {r.create_seconds:>12.2f}s {r.all_services_seconds:>12.2f}s {r.all_status_seconds:>10.2f}s {r.n / r.all_services_seconds:>7.1f} {r.p50:>7.3f}s {r.p99:>7.3f}s {r.peak_rss_mib:>5.0f}MiB {r.cpu_seconds:>6.1f}s {r.passes:>7} {r.mean_pass * 1000:>8.0f}ms {r.direct_seconds:>13.2f}s {r.n / r.direct_seconds:>9.1f} {r.all_services_seconds / r.direct_seconds:>5.1f}x {r.same_writes_seconds:>11.2f}s {r.all_services_seconds / r.same_writes_seconds:>5.1f}x")
    print("\nall Services: first AIFunction create -> last Knative Service seen by a watch; latency: a function's create -> its Service seen;")
    print("op CPU: the operator's user+system CPU seconds during the run (2 cores are shared with etcd, the apiserver and the client).")
    print("passes: reconcile passes (create + Service events); mean pass: render + apply + status write, from aifn_reconcile_duration_seconds.")
    print("direct: the same N rendered Services server-side applied by one client (8 threads); ratio = all Services / direct.")
    print("same writes: direct plus one status patch and one annotation patch per function (the operator's three writes), same client.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
