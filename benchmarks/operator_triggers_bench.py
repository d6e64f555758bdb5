"""What a handler and triggers cost the operator, on a real control plane (etcd + kube-apiserver +
kube-controller-manager, Knative's Service/PingSource/Trigger CRDs).

For N functions, side by side: plain functions (one Knative Service each) against functions with
inline handler code, one schedule and one event (Service + ConfigMap + PingSource + Trigger),
both through `aifn operator`; then the same 4N rendered objects server-side applied directly by
one client with the same 8 threads (the apiserver's own limit here).

    .venv/bin/python benchmarks/operator_triggers_bench.py          # N = 100
    .venv/bin/python benchmarks/operator_triggers_bench.py -n 300

Needs `make tools` (bin/). Prints one table; nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from aifunction_operator.controller.kube_client import KubeClient  # noqa: E402
from aifunction_operator.render.config import OperatorConfig  # noqa: E402
from aifunction_operator.render import render  # noqa: E402
from aifunction_operator.spec import parse_function  # noqa: E402
from support.controlplane import ControlPlane  # noqa: E402
from support.kube_client import TestClient, function  # noqa: E402
from support.operator_process import OperatorProcess  # noqa: E402
from support.processes import wait_until  # noqa: E402

THREADS = 8
CODE = "def handle(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
WITH_TRIGGERS = {
    "model": {"name": "digits", "repository": "s3://models/triton"},
    "handler": {"entrypoint": "app:handle", "code": CODE},
    "triggers": {
        "schedules": [{"name": "nightly", "cron": "0 3 * * *"}],
        "events": [{"name": "uploads", "broker": "default", "filter": {"attributes": {"type": "dev.aifn.uploaded"}}}],
    },
}


def in_parallel(items: list[Any], call: Any) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(call, items))
    return time.monotonic() - started


def count(kube: TestClient, namespace: str, group: str, plural: str) -> int:
    if group == "":
        return len(kube.core.list_namespaced_config_map(namespace, label_selector="app.kubernetes.io/managed-by=aifn-operator").items)
    return len(kube.custom.list_namespaced_custom_object(group, "v1", namespace, plural)["items"])


def all_have_status(kube: TestClient, namespace: str, n: int) -> bool:
    items = kube.list_functions(namespace)
    return len(items) == n and all((f.get("status") or {}).get("observedGeneration") == 1 for f in items)


def through_operator(plane: ControlPlane, kube: TestClient, op: OperatorProcess, namespace: str, n: int, spec: dict[str, Any] | None) -> tuple[float, int]:
    """Seconds from the first create until every child exists and every status is written; reconcile passes."""
    plane.kubectl("create", "namespace", namespace)
    kinds = [("serving.knative.dev", "services")] + ([("", "configmaps"), ("sources.knative.dev", "pingsources"), ("eventing.knative.dev", "triggers")] if spec else [])
    before = passes(op)
    started = time.monotonic()
    in_parallel(list(range(n)), lambda i: kube.create_function(namespace, function(f"fn-{i}", spec)))
    wait_until(f"{n} functions' children", lambda: all(count(kube, namespace, g, p) == n for g, p in kinds), 600, interval=0.2)
    wait_until(f"{n} statuses", lambda: all_have_status(kube, namespace, n), 600, interval=0.2)
    return time.monotonic() - started, passes(op) - before


def passes(op: OperatorProcess) -> int:
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines() if line.startswith("aifn_reconciles_total{")))


def direct(plane: ControlPlane, kube: TestClient, namespace: str, n: int) -> float:
    """The same children, rendered here and server-side applied by one client (8 threads)."""
    plane.kubectl("create", "namespace", namespace)
    objects: list[dict[str, Any]] = []
    for i in range(n):
        objects += render(parse_function(function(f"fn-{i}", WITH_TRIGGERS, namespace)), OperatorConfig())
    api = KubeClient(kube.api)
    return in_parallel(objects, api.apply)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="number of functions per run (default 100)")
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory(prefix="aifn-bench-") as tmp, ControlPlane() as plane:
        kube = TestClient(plane.kubeconfig, pool_size=THREADS * 2)
        op = OperatorProcess(plane.kubeconfig, Path(tmp) / "operator.log", ["--standalone", "--knative-namespace=knative-serving"]).start()
        try:
            plain, plain_passes = through_operator(plane, kube, op, "plain", n, None)
            triggered, triggered_passes = through_operator(plane, kube, op, "triggers", n, WITH_TRIGGERS)
            writes = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines() if line.startswith("aifn_writes_total{")}
        finally:
            op.stop()
        apply_direct = direct(plane, kube, "direct", n)
    print(f"\nOperator with handlers and triggers (N={n}, {THREADS} client threads, real etcd + kube-apiserver, all on this machine)")
    print(f"{'functions':>28} {'objects':>8} {'seconds':>8} {'fn/s':>7} {'passes':>7}")
    print(f"{'plain (Service)':>28} {n:>8} {plain:>8.2f} {n / plain:>7.1f} {plain_passes:>7}")
    print(f"{'handler + schedule + event':>28} {4 * n:>8} {triggered:>8.2f} {n / triggered:>7.1f} {triggered_passes:>7}")
    print(f"{'direct apply of the 4N':>28} {4 * n:>8} {apply_direct:>8.2f} {n / apply_direct:>7.1f} {'-':>7}")
    print(f"ratio triggers/plain: {triggered / plain:.2f}x   ratio operator/direct (same 4N objects): {triggered / apply_direct:.2f}x")
    print(f"operator writes by kind (both runs): {writes}")
    print("seconds: first create -> every child exists and every status is written; direct: the 4N applies alone (no status, no annotations).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
