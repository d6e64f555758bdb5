"""Event delivery on the running cluster: Broker -> handler -> Triton next to the same handler over HTTP.

Part 3 of benchmarks/cluster_bench.py (which parses the flags, checks the cluster and calls `run`):

    .venv/bin/python benchmarks/cluster_bench.py --skip-warm --skip-cold [--repeats 3]
        [--event-rates 5 20] [--event-seconds 15] [--event-wait 30] [--event-namespace aifn-bench-events]

In its own namespace (deleted at the end unless --keep): the model PV/PVC, a Broker `default` (MT
channel broker over the in-memory channel, the cluster's default delivery), the example function
examples/handlers/digit-events at exactly one replica with --cpu for Triton and the handler, its
ConfigMap holding on_scan.py unchanged plus a wrapper that stamps the handler's start and end
(time.time()) into the reply event (extensions handlerstart, handlerend), and a recorder Pod
(support.cluster.recorder: the handler image's Python, one JSON line per request) with a Trigger on
the replies' type.

Each path gets the same binary-mode CloudEvents (dev.aifn.digits.scanned, one digit each) at a
fixed rate, open loop (event i sent at t0 + i/rate by a thread pool, keep-alive connections):
  broker  POST to the ClusterIP of knative-eventing/broker-ingress with the Broker's Host and path;
          the ingress answers 202, the channel and the broker filter deliver the event to the
          function (internal Envoy -> activator -> queue-proxy -> handler -> Triton); the filter returns the
          reply to the channel, which posts it to the ingress, and through channel and filter it
          reaches the recorder.
  http    POST to the ClusterIP of aifn-ingress/aifn-gateway-internal with Host
          digit-events.<ns>.svc.cluster.local (the address the Trigger resolves to): the same
          Envoy -> activator -> queue-proxy -> handler -> Triton; the reply event is the answer.
Every clock is this machine's (pods and host share it), so the handler's stamps and the recorder's
arrival times are compared with the host's send times directly. Rounds (--repeats) run every rate on
both paths, the order alternating; percentiles pool the events of all rounds.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import math
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from cluster_bench import KUBECONFIG, ROOT, BenchNamespace, _load
from support.cluster.recorder import recorder, records, trigger_to_recorder
from support.processes import wait_until

EXAMPLE = ROOT / "examples" / "handlers" / "digit-events"
NAME = "digit-events"
SCANNED, CLASSIFIED = "dev.aifn.digits.scanned", "dev.aifn.digits.classified"
PATHS = ("broker", "http")
WORKERS = 64

STAMPS = '''

# Added by benchmarks/cluster_events.py: the handler's start and end in the reply event.
import time as _time

_classify = lambda_handler


def lambda_handler(event, context):
    started = _time.time()
    reply = _classify(event, context)
    if isinstance(reply, dict) and "headers" in reply:
        reply["headers"]["ce-handlerstart"] = f"{started:.6f}"
        reply["headers"]["ce-handlerend"] = f"{_time.time():.6f}"
    return reply
'''

@dataclass
class Sample:
    """One event as the sender saw it, completed with the handler's stamps and the reply's arrival."""

    id: str
    sent: float  # wall clock, just before the POST
    lag: float  # sent - scheduled
    answered: float = math.nan  # the sender has the answer (broker: the ingress's 202)
    status: int = 0
    error: str = ""
    start: float = math.nan  # the handler's stamps
    end: float = math.nan
    reply: float = math.nan  # broker: the reply at the recorder; http: = answered


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The event part's flags (rounds, --cpu and --keep are cluster_bench's)."""
    parser.add_argument("--event-rates", type=float, nargs="+", default=[5.0, 20.0], help="events per second, open loop")
    parser.add_argument("--event-seconds", type=float, default=15.0, help="sending window per rate and path")
    parser.add_argument("--event-wait", type=float, default=30.0, help="seconds to wait for late replies after a broker window")
    parser.add_argument("--event-namespace", default="aifn-bench-events")


def run(args: argparse.Namespace) -> None:
    """Part 3: set up, measure both paths in rounds, print the table, clean up."""
    kube = BenchNamespace(KUBECONFIG, args.event_namespace)
    problem = _eventing_problem(kube)
    if problem:
        print(f"\nevent delivery: skipped, {problem}", flush=True)
        return
    print(f"\nevent delivery: {NAME} at one replica, Broker default, namespace {args.event_namespace}, {args.repeats} rounds x "
          f"rates {'/'.join(f'{r:g}' for r in args.event_rates)} events/s x {args.event_seconds:g}s per path, "
          f"load average {_load(os.getloadavg())}", flush=True)
    try:
        bench = EventBench(kube, args)
        try:
            bench.setup()
        except (RuntimeError, TimeoutError, AssertionError):
            print(kube.kubectl("get", "aifunction,ksvc,pods,broker,triggers", "-o", "wide"), flush=True)
            raise
        samples = bench.measure()
        _print_events(samples, args, bench.recorded()[1])
    finally:
        if args.keep:
            print(f"kept namespace {args.event_namespace}")
        else:
            kube.teardown()


def _eventing_problem(kube: BenchNamespace) -> str | None:
    try:
        kube.kubectl("get", "crd", "brokers.eventing.knative.dev", namespaced=False, timeout=20)
        kube.kubectl("get", "service", "broker-ingress", "-n", "knative-eventing", namespaced=False, timeout=20)
    except RuntimeError as exc:
        return f"no Knative Eventing with the MT channel broker on the cluster ({exc})"
    return None


# --- set-up ----------------------------------------------------------------------------------------

def _manifests(namespace: str, cpu: str) -> list[dict[str, Any]]:
    """Broker, recorder Pod/Service/Trigger, the handler's ConfigMap and the function."""
    function = copy.deepcopy(yaml.safe_load((EXAMPLE / "digit-events.yaml").read_text()))
    function["metadata"] = {"name": NAME, "namespace": namespace}
    function["spec"]["resources"].update(cpu=cpu, memory="1Gi")
    function["spec"]["handler"]["cpu"] = cpu
    function["spec"]["scaling"].update(minReplicas=1, maxReplicas=1)
    ref = function["spec"]["handler"]["configMap"]
    code = (EXAMPLE / "on_scan.py").read_text() + STAMPS
    meta = {"namespace": namespace}
    return [
        {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default", **meta}},
        *recorder(namespace),
        trigger_to_recorder(namespace, "classified-to-recorder", CLASSIFIED, "/classified"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ref["name"], **meta}, "data": {ref["key"]: code}},
        function,
    ]


def _ready(obj: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (obj.get("status") or {}).get("conditions", []))


def _cluster_ip(kube: BenchNamespace, namespace: str, service: str) -> str:
    return kube.kubectl("get", "service", service, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}", namespaced=False).strip()


def _digits() -> list[list[float]]:
    from sklearn.datasets import load_digits  # noqa: PLC0415

    return [image.reshape(-1).tolist() for image in load_digits().images[:50]]


class EventBench:
    """The namespace's objects, the two senders and the recorder's log."""

    def __init__(self, kube: BenchNamespace, args: argparse.Namespace) -> None:
        self.kube = kube
        self.args = args
        self.run_id = uuid.uuid4().hex[:6]
        self.pixels = _digits()
        self.targets: dict[str, tuple[str, str, str]] = {}  # path -> (ClusterIP, Host, URL path)
        self.local = threading.local()

    def setup(self) -> None:
        """Create everything, wait until it is Ready and one event made the whole trip on each path."""
        kube, ns = self.kube, self.kube.namespace
        started = time.monotonic()
        kube.setup_namespace()
        wait_until("the default ServiceAccount", lambda: _ok(lambda: kube.kubectl("get", "serviceaccount", "default")), 60,
                   interval=1)
        kube.apply(_manifests(ns, self.args.cpu))
        wait_until("the Broker to be Ready",
                   lambda: _ready(kube.get("broker", "default")) and bool(kube.get("broker", "default")["status"].get("address")),
                   180, interval=2)
        kube.wait_ready(NAME, timeout=300)
        kube.kubectl("wait", "pod/recorder", "--for=condition=Ready", "--timeout=120s", timeout=150)
        wait_until("both Triggers to be Ready",
                   lambda: all(_ready(t) for t in json.loads(kube.kubectl("get", "triggers", "-o", "json"))["items"]), 120,
                   interval=2)
        url = kube.get("broker", "default")["status"]["address"]["url"]
        host, _, path = url.removeprefix("http://").partition("/")
        self.targets = {"broker": (_cluster_ip(kube, "knative-eventing", host.split(".")[0]), host, "/" + path),
                        "http": (_cluster_ip(kube, "aifn-ingress", "aifn-gateway-internal"), f"{NAME}.{ns}.svc.cluster.local", "/")}
        warm = [self._send("http", f"warmup-{self.run_id}-{i}", 0) for i in range(5)]
        assert all(s.status == 200 for s in warm), f"the function over HTTP: {[(s.status, s.error) for s in warm]}"
        first = self._send("broker", f"warmup-{self.run_id}-b", 0)
        assert first.status == 202, f"the broker ingress answered {first.status} {first.error}"
        wait_until("the first reply at the recorder", lambda: f"{first.id}-classified" in self.recorded()[0], 120, interval=1)
        pods = kube.function_pods(NAME)
        print(f"  ready in {time.monotonic() - started:.0f}s: {NAME} pod {[p['metadata']['name'] for p in pods]}, SKS mode "
              f"{kube.sks_mode(NAME)} (Proxy = activator in both paths); broker {url} via {self.targets['broker'][0]}, "
              f"function via aifn-gateway-internal {self.targets['http'][0]}", flush=True)

    def measure(self) -> dict[tuple[str, float], list[list[Sample]]]:
        """Every rate on both paths in each round; (path, rate) -> one list of samples per round."""
        samples: dict[tuple[str, float], list[list[Sample]]] = {}
        for round_ in range(self.args.repeats):
            for rate in self.args.event_rates:
                for path in PATHS if round_ % 2 == 0 else PATHS[::-1]:
                    window = self._window(path, rate, f"{path[0]}{round_}-{rate:g}")
                    samples.setdefault((path, rate), []).append(window)
                    time.sleep(1)
            print(f"  round {round_ + 1}/{self.args.repeats} done, load average {_load(os.getloadavg())}", flush=True)
        return samples

    def _window(self, path: str, rate: float, tag: str) -> list[Sample]:
        """Send at `rate` for --event-seconds; for the broker, wait for the replies at the recorder."""
        count = max(1, round(rate * self.args.event_seconds))
        prefix = f"{self.run_id}-{tag}"
        samples = _open_loop(lambda i, lag: self._send(path, f"{prefix}-{i}", lag), rate, count)
        if path == "broker":
            self._collect(samples)
        return samples

    def _collect(self, samples: list[Sample]) -> None:
        """Fill in the stamps and arrival of each accepted event's reply, waiting up to --event-wait."""
        wanted = {f"{s.id}-classified": s for s in samples if s.status == 202}
        deadline = time.monotonic() + self.args.event_wait
        while True:
            replies, _ = self.recorded()
            if all(k in replies for k in wanted) or time.monotonic() > deadline:
                break
            time.sleep(1)
        for key, sample in wanted.items():
            if key in replies:
                record = replies[key]
                sample.reply = record["at"]
                sample.start, sample.end = _stamps(record["headers"])
            else:
                sample.error = f"no reply within {self.args.event_wait:g}s"

    def recorded(self) -> tuple[dict[str, dict[str, Any]], int]:
        """The recorder's replies by ce-id (the first of each), and how many duplicates it got."""
        replies: dict[str, dict[str, Any]] = {}
        duplicates = 0
        for record in records(self.kube.kubectl("logs", "recorder", timeout=60)):
            key = record["headers"].get("ce-id", "")
            duplicates += key in replies
            replies.setdefault(key, record)
        return replies, duplicates

    def _send(self, path: str, event_id: str, lag: float) -> Sample:
        """POST one scanned-digit CloudEvent (binary mode) on `path`, on this thread's keep-alive connection."""
        ip, host, url = self.targets[path]
        pixels = self.pixels[hash(event_id) % len(self.pixels)]
        body = json.dumps({"scanId": event_id, "pixels": pixels}).encode()
        headers = {"Host": host, "Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": event_id,
                   "ce-source": "/aifn/bench/events", "ce-type": SCANNED}
        connection = self._connection(path, ip)
        sample = Sample(event_id, time.time(), lag)
        try:
            connection.request("POST", url, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            sample.answered = time.time()
            sample.status = response.status
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            sample.error = repr(exc)
            return sample
        if path == "http":
            sample.reply = sample.answered
            sample.start, sample.end = _stamps({k.lower(): v for k, v in response.getheaders()})
        if sample.status != (202 if path == "broker" else 200):
            sample.error = f"HTTP {sample.status}: {answer[:200]!r}"
        return sample

    def _connection(self, path: str, ip: str) -> http.client.HTTPConnection:
        connections = self.local.__dict__.setdefault("connections", {})
        if path not in connections:
            connections[path] = http.client.HTTPConnection(ip, 80, timeout=30)
        return connections[path]


def _ok(call: Callable[[], Any]) -> bool:
    try:
        call()
        return True
    except RuntimeError:
        return False


def _stamps(headers: dict[str, str]) -> tuple[float, float]:
    try:
        return float(headers["ce-handlerstart"]), float(headers["ce-handlerend"])
    except (KeyError, ValueError):
        return math.nan, math.nan


def _open_loop(send: Callable[[int, float], Sample], rate: float, count: int) -> list[Sample]:
    """Call send(i, lag) at t0 + i/rate on a thread pool (open loop: late answers do not delay later sends)."""
    t0 = time.time() + 0.2
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = []
        for i in range(count):
            scheduled = t0 + i / rate
            time.sleep(max(0.0, scheduled - time.time()))
            futures.append(pool.submit(lambda i=i, scheduled=scheduled: send(i, time.time() - scheduled)))
        return [f.result() for f in futures]


# --- figures ---------------------------------------------------------------------------------------

LEGEND = """\
  milliseconds from `send` (the host's POST, just before it); p50/p99 over the events of all rounds; one clock:
    start    send -> the handler function starts (the wrapper's first line, handler container)
    end      send -> the handler returns, after its Triton call; broker: Broker -> handler -> Triton
    reply    broker: send -> the reply event at the recorder (ingress -> channel -> filter -> Envoy ->
             activator -> queue-proxy -> handler -> Triton, then the reply: back to the filter, which
             hands it to the channel, which posts it to the ingress -> channel -> filter -> recorder);
             http: the client's round trip (Envoy -> activator -> queue-proxy -> handler -> Triton and back)
    ack      broker: the ingress's 202; the in-memory channel fans out synchronously (no async-handler
             annotation), so it comes only after both Triggers' deliveries, the reply's trip included;
             http: = reply
    handler  end - start: the handler and its Triton call (the same work on both paths)
    ok/sent  broker: replies at the recorder, matched by event id; http: 200 answers
    err      non-2xx answers, transport errors, broker replies missing after the wait
    ev/s     ok / (last reply - first send): the throughput the rate achieved"""


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (nan for no values)."""
    values = sorted(v for v in values if not math.isnan(v))
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)] if values else math.nan


def _ms(samples: list[Sample], field: str) -> list[float]:
    return [(getattr(s, field) - s.sent) * 1000 for s in samples]


def _row(path: str, rate: float, samples: list[Sample], windows: list[list[Sample]]) -> str:
    ok = [s for s in samples if not s.error]
    throughput = statistics.median(_throughput(w) for w in windows)
    cells = [_ms(ok, "start"), _ms(ok, "end"), _ms(ok, "reply"), _ms(ok, "answered"),
             [(s.end - s.start) * 1000 for s in ok]]
    figures = "  ".join(f"{_pct(c, 50):7.1f} {_pct(c, 99):7.1f}" for c in cells)
    return (f"  {rate:>5g}  {path:<6} {len(ok):>5}/{len(samples):<5} {len(samples) - len(ok):>4} "
            f"{throughput:>6.2f}  {figures}")


def _throughput(window: list[Sample]) -> float:
    ok = [s for s in window if not s.error]
    span = max((s.reply for s in ok), default=math.nan) - min(s.sent for s in window)
    return len(ok) / span if ok and span > 0 else 0.0


def _print_events(samples: dict[tuple[str, float], list[list[Sample]]], args: argparse.Namespace, duplicates: int) -> None:
    """The table, the broker/http ratios and what went wrong."""
    print(f"\nevent delivery at a fixed rate, {NAME} at one replica (all rounds pooled; ev/s: median over rounds)")
    print(LEGEND)
    print(f"  {'rate':>5}  {'path':<6} {'ok/sent':>11} {'err':>4} {'ev/s':>6}  "
          + "  ".join(f"{name + ' p50':>7} {'p99':>7}" for name in ("start", "end", "reply", "ack", "handler")))
    for rate in args.event_rates:
        for path in PATHS:
            windows = samples[(path, rate)]
            print(_row(path, rate, [s for w in windows for s in w], windows))
    for rate in args.event_rates:
        broker, direct = ([s for w in samples[(p, rate)] for s in w if not s.error] for p in PATHS)
        ratios = [_pct(_ms(broker, "end"), q) / _pct(_ms(direct, "end"), q) for q in (50, 99)]
        rounds = ", ".join(f"{_pct(_ms(b, 'end'), 50):.0f}/{_pct(_ms(h, 'end'), 50):.0f}"
                           for b, h in zip(samples[("broker", rate)], samples[("http", rate)]))
        print(f"  rate {rate:g}/s: broker/http, send -> handler end: p50 {ratios[0]:.2f}x, p99 {ratios[1]:.2f}x "
              f"(p50 ms broker/http in each round: {rounds})")
    _print_problems(samples, duplicates)


def _print_problems(samples: dict[tuple[str, float], list[list[Sample]]], duplicates: int) -> None:
    every = [s for windows in samples.values() for w in windows for s in w]
    lag = max(s.lag for s in every) * 1000
    print(f"  sender: {len(every)} events, sent at most {lag:.0f} ms behind schedule; "
          f"duplicate replies at the recorder (redeliveries): {duplicates}")
    errors: dict[str, int] = {}
    for s in every:
        if s.error:
            errors[s.error[:160]] = errors.get(s.error[:160], 0) + 1
    for error, n in sorted(errors.items(), key=lambda e: -e[1])[:8]:
        print(f"  ! {n} x {error}")
