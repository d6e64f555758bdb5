"""The digits function on the running cluster against bare Triton and `aifn run`, side by side in one run.

    .venv/bin/python benchmarks/cluster_bench.py [--repeats 3] [--seconds 4] [--concurrency 1 8 64]

Needs the cluster of `make cluster` (.aifn/cluster/kubeconfig and .aifn/cluster/gateway);
exits 2 saying so when it is not there (0 with --if-cluster, for `make bench`). Everything
runs in its own namespace (--namespace, default aifn-bench, with a hostPath PV/PVC
`aifn-models` on /aifn/model_repo as the e2e tests make it), which is deleted at the end
(--keep leaves it). Figures and a reading: docs/cluster-bench.md.

1. Throughput and p50/p99 of single-digit requests (KServe v2 JSON, one 8x8 image) at each
   concurrency, one function at exactly one replica (minReplicas = maxReplicas = 1, so every
   cluster path reaches the same Triton process):
     gateway      Envoy NodePort (Host: <fn>.<ns>.example.com) -> [activator, when the SKS is
                  in Proxy mode: printed] -> queue-proxy -> Triton; what a client of the
                  function uses
     activator    the activator pod IP, port 8012, with the routing headers the ingress adds
                  (Knative-Serving-Namespace/-Revision) -> queue-proxy -> Triton (no Envoy)
     queue-proxy  the pod IP, port 8012: queue-proxy -> Triton (no Envoy, no activator)
     direct       the pod IP, port 8000: the Triton container itself (the rendered container
                  port `user-port` 8000)
     aifn run     `aifn run` on this host with the same function at min = max = 1 (as
                  benchmarks/local_bench.py does): its gateway -> a host tritonserver
                  (pytriton's build, not the image's: same model, not the same binary)
   The load generator is benchmarks/loadgen (Go, closed loop, keep-alive), built here with
   one added flag, -header Name:value, for the Host header Envoy routes by and the
   activator's routing headers (benchmarks/loadgen itself is not changed). Points are
   measured in interleaved rounds (every path once per concurrency per round, the order
   rotating each round); the table shows medians and each ratio is the median of the
   per-round ratios to `direct`.

2. Cold start, seconds to the first answer:
     scale from zero  a function at minReplicas 0 is left until no pod of it is left
                      (Knative's stable window + grace period), then one request goes
                      through the gateway; the activator holds it while the autoscaler
                      scales the Deployment 0 -> 1, the pod is scheduled, started, Triton
                      loads the model, queue-proxy reports ready. Timed from sending the
                      request to its answer.
     bare pod         a plain Pod with the same image, command, args, resources, security
                      context and model volume (copied from the function's rendered Knative
                      Service, minus probes and the queue-proxy sidecar), created through the
                      API server: timed from the create call to the first successful
                      inference answer at the pod IP, port 8000 (polling the pod IP every
                      100 ms, then the infer endpoint every 50 ms).
   Both go through the same scheduler, kubelet, containerd, image and hostPath volume, so the
   ratio is what Knative's machinery (activator, autoscaler, Deployment/ReplicaSet, the
   queue-proxy sidecar and its readiness) adds to starting the same Triton pod. Starting
   tritonserver on the host instead would leave out the pod sandbox and volume set-up, which
   a cluster cannot avoid. Each round: wait for zero, scale from zero, bare pod (the
   function's idle pod is still up during the bare start, and the bare pod is gone before
   the next scale from zero). The pods' own timestamps (whole seconds) and Triton's log
   (microseconds, best effort: empty when the container log is gone), relative to the
   request or the create call, show where the time goes: pod created, scheduled, Triton
   container started, Triton's first log line, model loaded, HTTP up, and for the function's
   pod the kubelet's Ready (its readiness probe runs every 10 s; the activator probes the
   pod itself and forwards earlier).

3. Event delivery (benchmarks/cluster_events.py, in its own namespace, --event-namespace, default
   aifn-bench-events): examples/handlers/digit-events at one replica behind a Broker `default`
   (MT channel broker over the in-memory channel), its handler wrapped to stamp its start and end
   into the reply event, a recorder Pod subscribed to the replies. CloudEvents at fixed rates
   (--event-rates, --event-seconds each, open loop) on two paths, interleaved in rounds:
     broker       the Broker's ingress -> channel -> broker filter -> internal Envoy -> activator
                  -> queue-proxy -> handler -> Triton; the reply back through the broker to the
                  recorder
     http         the same CloudEvent POSTed to the function through the internal Envoy (what the
                  Trigger's subscriber URI resolves to): the same hops from Envoy on
   p50/p99 of send -> handler start, send -> handler end (Broker -> handler -> Triton), send ->
   reply (recorder, or the client's round trip), delivered/sent and events/s, the broker/http
   ratios of send -> handler end. Skipped (saying so) where the cluster has no Eventing.

Two vCPUs are shared by the cluster (control plane, Envoy, activator, other people's tests),
the servers and the load generator: compare paths within one run, not runs with each other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from handler_bench import LOADGEN_SRC  # noqa: E402
from local_bench import Gateway, _function_file, _one_digit  # noqa: E402
from support.processes import wait_until  # noqa: E402

CLUSTER_DIR = ROOT / ".aifn" / "cluster"
KUBECONFIG = CLUSTER_DIR / "kubeconfig"
GATEWAY_FILE = CLUSTER_DIR / "gateway"
MODEL = "digits"
WARM = "digits-warm"
COLD = "digits-cold"
PATHS = ["gateway", "activator", "queue-proxy", "direct", "aifn run"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="rounds: cold starts per path and load points per path (medians)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured load duration per concurrency and path (after 1s warm-up)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--namespace", default="aifn-bench")
    parser.add_argument("--cpu", default="20m", help="CPU request of the Triton containers (no limit is set; keep it small on a shared cluster)")
    parser.add_argument("--skip-cold", action="store_true", help="only the throughput table")
    parser.add_argument("--skip-warm", action="store_true", help="only the cold starts")
    parser.add_argument("--skip-events", action="store_true", help="no event delivery part")
    parser.add_argument("--keep", action="store_true", help="leave the namespace (and digits-cold; digits-warm is deleted before the cold starts)")
    parser.add_argument("--if-cluster", action="store_true", help="exit 0 instead of 2 when there is no cluster (for `make bench`)")
    import cluster_events  # noqa: PLC0415 (it imports this module)
    cluster_events.add_arguments(parser)
    args = parser.parse_args()

    problem = _cluster_problem()
    if problem:
        print(f"cluster_bench: {problem}\n  start the cluster with `make cluster` (kubeconfig {KUBECONFIG}, gateway URL in {GATEWAY_FILE})",
              file=sys.stderr)
        return 0 if args.if_cluster else 2
    gateway = GATEWAY_FILE.read_text().strip().rstrip("/")
    kube = BenchNamespace(KUBECONFIG, args.namespace)
    workdir = Path(tempfile.mkdtemp(prefix="aifn-cluster-bench-"))
    image = _one_digit()
    body = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32",
                                   "data": image.reshape(-1).tolist()}]}).encode()
    body_file = workdir / "digit.json"
    body_file.write_bytes(body)
    loadgen = _build_loadgen()
    load_start = os.getloadavg()
    print(f"aifn cluster benchmark: model {MODEL}, gateway {gateway}, namespace {args.namespace}, "
          f"{os.cpu_count()} CPUs, load average {_load(load_start)} at start, repeats {args.repeats}, "
          f"{args.seconds:g}s per load point\n", flush=True)
    try:
        kube.setup_namespace()
        if not args.skip_warm:
            kube.apply(_function(WARM, args.namespace, args.cpu, min_replicas=1))
        if not args.skip_cold:
            kube.apply(_function(COLD, args.namespace, args.cpu, min_replicas=0))
            kube.wait_ready(COLD)  # created at initial scale 1; it scales to zero during the load rounds
        if not args.skip_warm:
            kube.wait_ready(WARM)
            warm(kube, gateway, loadgen, body, body_file, workdir, args)
        if not args.skip_cold:
            if not args.skip_warm:
                # its pod would drain for 30 s (queue-proxy) during the first cold start
                kube.kubectl("delete", "aifunction", WARM, "--wait=false")
                kube.wait_no_pods(WARM, timeout=180)
            cold(kube, gateway, body, args)
    finally:
        if args.keep:
            print(f"\nkept namespace {args.namespace}")
        else:
            kube.teardown()
    if not args.skip_events:
        cluster_events.run(args)
    print(f"\nenvironment: {os.cpu_count()} CPUs; load average {_load(load_start)} at start, {_load(os.getloadavg())} at end; "
          f"logs in {workdir}")
    return 0


# --- throughput and latency -------------------------------------------------------------------

def warm(kube: BenchNamespace, gateway: str, loadgen: Path, body: bytes, body_file: Path, workdir: Path, args: argparse.Namespace) -> None:
    pods = kube.function_pods(WARM)
    assert len(pods) == 1, f"{WARM} should have exactly one pod, has {[p['metadata']['name'] for p in pods]}"
    pod_ip = pods[0]["status"]["podIP"]
    host = f"{WARM}.{args.namespace}.example.com"
    infer = f"/v2/models/{MODEL}/infer"
    revision = kube.get("ksvc", WARM)["status"]["latestReadyRevisionName"]
    activators = [p["status"]["podIP"] for p in kube.pods("knative-serving", "app=activator") if p["status"].get("podIP")]
    with Gateway(_function_file(workdir, min_replicas=1), workdir / "aifn-run") as local:
        targets: dict[str, tuple[str, dict[str, str]]] = {
            "gateway": (gateway + infer, {"Host": host}),
            # what the ingress sends the activator (Kourier-style routing headers)
            "activator": (f"http://{activators[0]}:8012{infer}",
                          {"Host": host, "Knative-Serving-Namespace": args.namespace, "Knative-Serving-Revision": revision}),
            "queue-proxy": (f"http://{pod_ip}:8012{infer}", {}),
            "direct": (f"http://{pod_ip}:8000{infer}", {}),
            "aifn run": (local.url + infer, {}),
        }
        for url, headers in targets.values():
            _post(url, body, headers)
        print(f"throughput: {WARM} pod {pods[0]['metadata']['name']} ({pod_ip}) on {pods[0]['spec'].get('nodeName')}, "
              f"SKS mode {kube.sks_mode(WARM)} before the load (Proxy = activator in the gateway path); "
              f"activator pods {activators}", flush=True)
        samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for round_ in range(args.repeats):
            order = PATHS[round_ % len(PATHS):] + PATHS[:round_ % len(PATHS)]
            for concurrency in args.concurrency:
                for path in order:
                    url, headers = targets[path]
                    result = _run_loadgen(loadgen, url, headers, body_file, concurrency, args.seconds)
                    samples.setdefault((path, concurrency), []).append(result)
                    if result["non_2xx"] or result["errors"]:
                        print(f"  round {round_ + 1} c={concurrency} {path}: {result['non_2xx']} non-2xx, {result['errors']} errors; "
                              f"first: {result.get('first_error', '')}", flush=True)
            print(f"  round {round_ + 1}/{args.repeats} done, load average {_load(os.getloadavg())}", flush=True)
        mode_after = kube.sks_mode(WARM)
        after = kube.function_pods(WARM)
    print(f"  SKS mode after the load: {mode_after}; pods: {len(after)} (restarts "
          f"{[c.get('restartCount', 0) for p in after for c in p['status'].get('containerStatuses', [])]})\n")
    _print_throughput(samples, args.concurrency)


def _print_throughput(samples: dict[tuple[str, int], list[dict[str, Any]]], levels: list[int]) -> None:
    print("warm, single-digit requests, one replica: throughput and latency (median over rounds)")
    print(f"  {'conc':>4}  {'path':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}   {'req/s /direct':>13} {'p50 /direct':>11} {'p99 /direct':>11}  errors")
    for concurrency in levels:
        direct = samples[("direct", concurrency)]
        for path in PATHS:
            runs = samples[(path, concurrency)]

            def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            def ratio(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(r[key] / d[key] for r, d in zip(runs, direct) if d[key])

            errors = sum(r["non_2xx"] + r["errors"] for r in runs)
            print(f"  {concurrency:>4}  {path:<12} {med('rps'):>8.0f} {med('p50_ms'):>8.2f} {med('p99_ms'):>8.2f}   "
                  f"{ratio('rps'):>13.2f} {ratio('p50_ms'):>11.2f} {ratio('p99_ms'):>11.2f}  {errors or ''}")
    per_round = "; ".join(
        f"c={c} " + ", ".join(p + " " + "/".join(f"{r['rps']:.0f}" for r in samples[(p, c)]) for p in PATHS) for c in levels)
    print(f"  (req/s in each round: {per_round})")


def _build_loadgen() -> Path:
    """benchmarks/loadgen built with one more flag, -header Name:value (Host too), into the cache."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        sys.exit("cluster_bench: the load generator is written in Go; install Go (make tools needs it too)")
    source = (LOADGEN_SRC / "main.go").read_text()
    patches = [
        ('\t"sort"\n', '\t"sort"\n\t"strings"\n'),
        ("\tflag.Parse()\n", '\tvar headers headerList\n\tflag.Var(&headers, "header", "extra header Name:value, repeatable (Host sets the Host)")\n'
                             "\tflag.Parse()\n"),
        ('req.Header.Set("Content-Type", *contentType)\n',
         'req.Header.Set("Content-Type", *contentType)\n'
         '\t\t\t\tfor _, h := range headers {\n'
         '\t\t\t\t\tk, v, _ := strings.Cut(h, ":")\n'
         '\t\t\t\t\tif strings.EqualFold(k, "Host") {\n\t\t\t\t\t\treq.Host = strings.TrimSpace(v)\n'
         '\t\t\t\t\t} else {\n\t\t\t\t\t\treq.Header.Set(k, strings.TrimSpace(v))\n\t\t\t\t\t}\n\t\t\t\t}\n'),
    ]
    for old, new in patches:
        if source.count(old) != 1:
            sys.exit(f"cluster_bench: benchmarks/loadgen/main.go changed; cannot add -host at {old.strip()!r}")
        source = source.replace(old, new)
    source += ("\ntype headerList []string\n\n"
               "func (h *headerList) String() string { return strings.Join(*h, \", \") }\n\n"
               "func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }\n")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aifn" / "loadgen-host"
    cache.mkdir(parents=True, exist_ok=True)
    binary = cache / "aifn-loadgen-host"
    if not binary.exists() or (cache / "main.go").read_text() != source:
        (cache / "main.go").write_text(source)
        shutil.copy(LOADGEN_SRC / "go.mod", cache / "go.mod")
        subprocess.run([go, "build", "-o", str(binary), "."], cwd=cache, check=True,
                       env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
    return binary


def _run_loadgen(loadgen: Path, url: str, headers: dict[str, str], body: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    argv = [str(loadgen), "-url", url, "-body", str(body), "-c", str(concurrency), "-d", f"{seconds}s", "-warmup", "1s"]
    for name, value in headers.items():
        argv += ["-header", f"{name}:{value}"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


# --- cold start -------------------------------------------------------------------------------

def cold(kube: BenchNamespace, gateway: str, body: bytes, args: argparse.Namespace) -> None:
    host = f"{COLD}.{args.namespace}.example.com"
    template = kube.get("ksvc", COLD)["spec"]["template"]["spec"]
    scale_from_zero: list[float] = []
    bare: list[float] = []
    notes: list[str] = []
    print("cold starts (each round: wait until no pod of the function is left, scale from zero, bare pod)", flush=True)
    for round_ in range(args.repeats):
        waited = kube.wait_no_pods(COLD, timeout=600)
        mode = kube.sks_mode(COLD)
        sent_wall = time.time()
        seconds, errors = _first_answer(gateway + f"/v2/models/{MODEL}/infer", body, host)
        scale_from_zero.append(seconds)
        notes.extend(f"scale from zero, round {round_ + 1}: {e}" for e in errors)
        pods = kube.function_pods(COLD)
        cold_pod = pods[-1]["metadata"]["name"] if pods else None
        cold_marks = kube.triton_marks(cold_pod, sent_wall) if cold_pod else ""

        name = f"bare-triton-{round_}"
        bare_seconds, created_wall = kube.bare_triton(name, template, body)
        bare.append(bare_seconds)
        bare_split = _pod_split(kube.get("pod", name), created_wall, probes=False) + kube.triton_marks(name, created_wall)
        kube.kubectl("delete", "pod", name, "--wait=true", "--timeout=120s", timeout=150)
        # the kubelet reports Ready some seconds late: read the function's pod after the bare run
        split = _pod_split(kube.get("pod", cold_pod), sent_wall) + cold_marks if cold_pod else "no pod?"
        print(f"  round {round_ + 1}: scale from zero {seconds:6.2f}s (zero after {waited:.0f}s of waiting, SKS {mode}; "
              f"{split}){'; errors: ' + str(len(errors)) if errors else ''}", flush=True)
        print(f"  round {round_ + 1}: bare pod        {bare_seconds:6.2f}s ({bare_split})", flush=True)
    s, b = statistics.median(scale_from_zero), statistics.median(bare)
    print("\ncold start, seconds to the first answer (median; all runs)")
    print(f"  scale from zero through the gateway      {s:6.2f}   {_runs(scale_from_zero)}")
    print(f"  bare Triton pod: create -> first answer  {b:6.2f}   {_runs(bare)}")
    print(f"  ratio scale from zero / bare pod         {s / b:6.2f}x  (median of per-round ratios "
          f"{statistics.median(x / y for x, y in zip(scale_from_zero, bare)):.2f}x)")
    for note in notes:
        print(f"  ! {note}")


def _first_answer(url: str, body: bytes, host: str, timeout: float = 600) -> tuple[float, list[str]]:
    """Seconds from sending until the first 200 answer (retrying on errors, which are returned)."""
    started = time.monotonic()
    errors: list[str] = []
    while True:
        try:
            answer = json.loads(_post(url, body, {"Host": host}, timeout=timeout))
            assert answer["outputs"], answer
            return time.monotonic() - started, errors
        except urllib.error.HTTPError as exc:
            errors.append(f"after {time.monotonic() - started:.2f}s: HTTP {exc.code}: {exc.read()[:300]!r}")
        except OSError as exc:
            errors.append(f"after {time.monotonic() - started:.2f}s: {exc!r}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"no answer from {url} (Host {host}) in {timeout:.0f}s: {errors[-3:]}")
        time.sleep(0.2)


def _pod_split(pod: dict[str, Any], start_wall: float, *, probes: bool = True) -> str:
    """Where the time went, from the pod's own timestamps (1 s resolution), relative to start_wall."""
    def at(stamp: str | None) -> str:
        if not stamp:
            return "?"
        return f"{dt.datetime.fromisoformat(stamp.replace('Z', '+00:00')).timestamp() - start_wall:+.0f}s"

    status = pod.get("status", {})
    conditions = {c["type"]: c.get("lastTransitionTime") for c in status.get("conditions", []) if c.get("status") == "True"}
    started = [c["state"]["running"]["startedAt"] for c in status.get("containerStatuses", [])
               if c["name"] == "triton" and "running" in c.get("state", {})]
    return (f"pod created {at(pod['metadata'].get('creationTimestamp'))}, scheduled {at(conditions.get('PodScheduled'))}, "
            f"triton started {at(started[0] if started else None)}"
            + (f", pod Ready (kubelet) {at(conditions.get('Ready'))}" if probes else ""))


# --- cluster access ---------------------------------------------------------------------------

class BenchNamespace:
    """The benchmark's namespace: kubectl in it, its set-up and clean-up, waits, and (with the Python
    client) the timed bare Triton pod."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.kubectl_bin = str(ROOT / "bin" / "kubectl") if (ROOT / "bin" / "kubectl").exists() else (shutil.which("kubectl") or "kubectl")

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120, namespaced: bool = True) -> str:
        argv = [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *(["-n", self.namespace] if namespaced else []), *args]
        done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def apply(self, objects: list[dict[str, Any]] | dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": objects if isinstance(objects, list) else [objects]}))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-o", "json"))

    def function_pods(self, function: str) -> list[dict[str, Any]]:
        return self.pods(self.namespace, f"serving.knative.dev/service={function}")

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        pods = json.loads(self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json", namespaced=False))["items"]
        return sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])

    def sks_mode(self, function: str) -> str:
        items = json.loads(self.kubectl("get", "sks", "-l", f"serving.knative.dev/service={function}", "-o", "json"))["items"]
        return ",".join(i.get("spec", {}).get("mode", "?") for i in items) or "none"

    def setup_namespace(self) -> None:
        ns = self.namespace
        self.kubectl("apply", "-f", "-", namespaced=False, input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"aifn-models-{ns}"},
             "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                      "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/aifn/model_repo", "type": "Directory"},
                      "claimRef": {"namespace": ns, "name": "aifn-models"}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "aifn-models", "namespace": ns},
             "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": f"aifn-models-{ns}",
                      "resources": {"requests": {"storage": "1Gi"}}}},
        ]}))
        wait_until("the PVC to bind", lambda: self.get("pvc", "aifn-models").get("status", {}).get("phase") == "Bound", 120,
                   interval=1)

    def teardown(self) -> None:
        for args in (("delete", "namespace", self.namespace, "--wait=true", "--timeout=300s"),
                     ("delete", "pv", f"aifn-models-{self.namespace}", "--wait=true", "--timeout=60s")):
            try:
                self.kubectl(*args, timeout=330, namespaced=False)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"clean-up: {exc}", file=sys.stderr)

    def wait_ready(self, function: str, timeout: float = 900) -> None:
        def ready() -> bool:
            status = self.get("aifunction", function).get("status") or {}
            return bool(status.get("url")) and any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))

        wait_until(f"AIFunction {function} to be Ready", ready, timeout, interval=2)

    def wait_no_pods(self, function: str, timeout: float) -> float:
        started = time.monotonic()
        wait_until(f"{function} to scale to zero (no pod left)", lambda: not self.function_pods(function), timeout, interval=2)
        return time.monotonic() - started

    def triton_marks(self, pod: str, start_wall: float) -> str:
        """Triton's own log times (microseconds) relative to start_wall: process up, model loaded, HTTP up.

        Best effort: empty when the container log is not there (kubectl logs failing, or a log
        file truncated under the kubelet).
        """
        try:
            text = self.kubectl("logs", pod, "-c", "triton", timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            return ""
        year = dt.datetime.now(dt.timezone.utc).year
        marks: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r"^[IWE](\d{4}) (\d\d:\d\d:\d\d\.\d+) ", line)
            if not match:
                continue
            stamp = dt.datetime.strptime(f"{year}{match[1]} {match[2]}", "%Y%m%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)
            offset = stamp.timestamp() - start_wall
            marks.setdefault("first log line", offset)
            if "successfully loaded" in line:
                marks.setdefault("model loaded", offset)
            if "Started HTTPService" in line:
                marks.setdefault("HTTP up", offset)
        if "first log line" not in marks:
            return ""
        return "; triton log: " + ", ".join(f"{k} {v:+.1f}s" for k, v in marks.items())

    def bare_triton(self, name: str, template: dict[str, Any], body: bytes) -> tuple[float, float]:
        """Create a plain Pod running the function's Triton container; (seconds to the first answer, wall start)."""
        from kubernetes import client, config  # noqa: PLC0415

        triton = next(c for c in template["containers"] if c["name"] == "triton")
        container = {k: v for k, v in triton.items() if k not in ("readinessProbe", "livenessProbe", "startupProbe")}
        container["ports"] = [{"name": "http", "containerPort": 8000}]
        spec = {"containers": [container], "volumes": template.get("volumes", []), "restartPolicy": "Never",
                "enableServiceLinks": False, "terminationGracePeriodSeconds": 5}
        for key in ("securityContext", "nodeSelector", "tolerations", "affinity", "runtimeClassName"):
            if key in template:
                spec[key] = template[key]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "aifn-bench-bare"}}, "spec": spec}
        api = client.CoreV1Api(config.new_client_from_config(str(self.kubeconfig)))
        url = f"/v2/models/{MODEL}/infer"
        start_wall = time.time()
        started = time.monotonic()
        api.create_namespaced_pod(self.namespace, pod)
        ip = None
        while not ip:
            if time.monotonic() - started > 600:
                raise RuntimeError(f"pod {name} got no IP in 600s")
            time.sleep(0.1)
            ip = api.read_namespaced_pod(name, self.namespace).status.pod_ip
        while True:
            try:
                _post(f"http://{ip}:8000{url}", body, timeout=60)
                return time.monotonic() - started, start_wall
            except (urllib.error.HTTPError, OSError):
                if time.monotonic() - started > 600:
                    raise
                time.sleep(0.05)


def _cluster_problem() -> str | None:
    if not KUBECONFIG.exists():
        return f"no cluster: {KUBECONFIG} does not exist"
    if not GATEWAY_FILE.exists() or not GATEWAY_FILE.read_text().strip():
        return f"no gateway: {GATEWAY_FILE} does not exist"
    kube = BenchNamespace(KUBECONFIG, "default")
    try:
        kube.kubectl("get", "--raw=/readyz", namespaced=False, timeout=20)
        kube.kubectl("get", "crd", "aifunctions.aifn.dev", namespaced=False, timeout=20)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"the cluster in {KUBECONFIG} does not answer or lacks the AIFunction CRD: {exc}"
    return None


def _function(name: str, namespace: str, cpu: str, *, min_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": {"name": MODEL, "repository": "pvc://aifn-models"},
                 "resources": {"cpu": cpu, "memory": "1Gi", "sharedMemory": "256Mi"},
                 "scaling": {"minReplicas": min_replicas, "maxReplicas": 1, "containerConcurrency": 0},
                 "timeoutSeconds": 60},
    }


def _post(url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 300) -> bytes:
    headers = {"Content-Type": "application/json", **(headers or {})}
    with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=timeout) as resp:
        return resp.read()


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in avg)


def _runs(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


if __name__ == "__main__":
    sys.exit(main())
