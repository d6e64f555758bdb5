"""The running operator's state: the functions it knows, pod scheduling, Knative's settings.

One `OperatorState` per process. Reconciles of the same function are serialized by a lock and run in
a thread pool (the Kubernetes client is synchronous); the kopf handlers only call in here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .kube_client import CONFIGMAPS, ApiError, KubeClient
from .children import ChildKey
from ..render.config import OperatorConfig
from .observability import Metrics
from .peering import PeeringGate
from .preflight import AUTOSCALER_CONFIGMAP, FEATURES_CONFIGMAP, KnativeSettings
from .reconcile import Cached, Outcome, reconcile
from .status import summary

Key = tuple[str, str]  # (namespace, name)
log = logging.getLogger("aifn.operator")
# A pass makes a few API requests, each timing out after 30 s, and stops at the first transient
# error: one running this long is wedged, and only a restart frees its worker.
STUCK_PASS_SECONDS = 300.0
KNATIVE_RETRY_SECONDS = 5.0
# Pre-warm wake-ups: a little after the window's edge (the pass reads the clock then), at least
# every few minutes (a clock step, a missed edge), and again soon after a failed pass.
WAKE_SLACK_SECONDS = 1.0
WAKE_MAX_SECONDS = 300.0
WAKE_RETRY_SECONDS = 10.0


def unschedulable_message(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message if the pod is Pending because no node fits, else None."""
    status = pod.get("status") or {}
    if status.get("phase", "Pending") != "Pending":
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            return str(cond.get("message") or "no node can run the pod")
    return None


@dataclass(frozen=True)
class PodPlacement:
    """What the operator keeps of one of a function's pods."""

    unschedulable: str | None  # the scheduler's message while it waits for a node
    node: str | None  # the node it runs on, once Running


def running_node(pod: Mapping[str, Any]) -> str | None:
    """The node a Running pod is on, else None."""
    if (pod.get("status") or {}).get("phase") != "Running":
        return None
    return (pod.get("spec") or {}).get("nodeName") or None


def resource_version(body: Mapping[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def keep_newest(store: dict[Any, Mapping[str, Any]], key: Any, obj: Mapping[str, Any] | None) -> None:
    """Store `obj` under `key` unless the stored copy is newer (by resourceVersion); None removes it."""
    if obj is None:
        store.pop(key, None)
    elif key not in store or resource_version(obj) >= resource_version(store[key]):
        store[key] = obj


class OperatorState:
    """Caches fed by watch events, and the per-function reconcile entry point."""

    def __init__(self, kube: KubeClient, config: OperatorConfig, metrics: Metrics, workers: int = 16) -> None:
        self.kube = kube
        self.config = config
        self.metrics = metrics
        self.knative = KnativeSettings()
        self.functions: dict[Key, Mapping[str, Any]] = {}
        self.services: dict[Key, Mapping[str, Any]] = {}  # the newest Knative Service seen per function
        self.pods: dict[Key, dict[str, PodPlacement]] = defaultdict(dict)
        # ConfigMaps, PingSources and Triggers per function, fed by watches and our own writes;
        # trusted only for functions in `children_known` (else the next pass lists them).
        self.children: dict[Key, dict[ChildKey, Mapping[str, Any]]] = defaultdict(dict)
        self.children_known: set[Key] = set()
        self.child_events: dict[Key, int] = defaultdict(int)  # watch events seen per function
        self.service_events: dict[Key, int] = defaultdict(int)
        self.readiness: dict[Key, tuple[str, str]] = {}
        self._locks: dict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aifn-reconcile")
        self._stop = threading.Event()
        self.knative_loaded = threading.Event()
        self.gate = PeeringGate(None)
        self.stuck_after = STUCK_PASS_SECONDS
        self._running: dict[int, tuple[Key, float]] = {}  # passes executing in a worker: id -> (function, start)
        self._knative_thread: threading.Thread | None = None
        self._wakeups: dict[Key, asyncio.TimerHandle] = {}  # the next pre-warm edge per function
        self._wake_tasks: set[asyncio.Task[None]] = set()

    # --- caches -------------------------------------------------------------------------
    def remember(self, body: Mapping[str, Any]) -> None:
        """Keep the newest copy of a function's body."""
        key = _key(body)
        known = self.functions.get(key)
        if known is None or resource_version(body) >= resource_version(known):
            self.functions[key] = body

    def forget(self, key: Key) -> None:
        """Drop a deleted function."""
        self.functions.pop(key, None)
        self.services.pop(key, None)
        self.pods.pop(key, None)
        self.children.pop(key, None)
        self.children_known.discard(key)
        self.child_events.pop(key, None)
        self.service_events.pop(key, None)
        self._locks.pop(key, None)
        self._set_wakeup(key, None)
        self.metrics.move_function(self.readiness.pop(key, None), None)

    def observe_service(self, key: Key, service: Mapping[str, Any] | None) -> None:
        """A watch event for a function's Knative Service (None: it was deleted)."""
        self.service_events[key] += 1
        self._keep_service(key, service)

    def _keep_service(self, key: Key, service: Mapping[str, Any] | None) -> None:
        """Keep the newest copy of a function's Knative Service."""
        keep_newest(self.services, key, service)

    def observe_child(self, key: Key, child: ChildKey, obj: Mapping[str, Any] | None) -> None:
        """A watch event for one of a function's children (None: deleted or no longer labelled ours)."""
        self.child_events[key] += 1
        keep_newest(self.children[key], child, obj)

    def _merge_children(self, key: Key, outcome: Outcome, events_before: int) -> None:
        """After a pass: its view of the children becomes the cache, unless watch events arrived
        meanwhile (its view may predate them): then the next pass lists the children again."""
        if outcome.children is None:
            return
        if self.child_events[key] != events_before:
            self.children_known.discard(key)
            return
        self.children[key] = dict(outcome.children)
        self.children_known.add(key)

    def track_pod(self, key: Key, pod_name: str, pod: Mapping[str, Any] | None) -> bool:
        """Record a pod's scheduling state and node; True when the function's verdict or nodes changed."""
        before = (self.unschedulable(key), self.running_on(key))
        if pod is None:
            self.pods[key].pop(pod_name, None)
        else:
            self.pods[key][pod_name] = PodPlacement(unschedulable_message(pod), running_node(pod))
        return (self.unschedulable(key), self.running_on(key)) != before

    def unschedulable(self, key: Key) -> str | None:
        """The first scheduler message among the function's Pending pods."""
        messages = sorted(p.unschedulable for p in self.pods.get(key, {}).values() if p.unschedulable)
        return messages[0] if messages else None

    def running_on(self, key: Key) -> tuple[str, ...]:
        """The nodes the function's running pods are on, sorted."""
        return tuple(sorted({p.node for p in self.pods.get(key, {}).values() if p.node}))

    # --- reconciling ---------------------------------------------------------------------
    async def reconcile(self, key: Key, body: Mapping[str, Any] | None = None) -> Outcome | None:
        """Reconcile one function (serialized per function); None when it is not known.

        The Service last seen by the watch is compared with the desired one first: an
        unchanged Service is not applied again.
        """
        async with self._locks[key]:
            fresh = body is not None  # from a kopf handler, not from the cache: the function exists
            if body is not None:
                self.remember(body)
            current = self.functions.get(key)
            if current is None or (current.get("metadata") or {}).get("deletionTimestamp"):
                return None
            live = self.services.get(key)
            children = {name: dict(obj) for name, obj in self.children[key].items()} if key in self.children_known else None
            events_before = self.child_events[key]
            service_events_before = self.service_events[key]
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            try:
                outcome = await loop.run_in_executor(
                    self._executor,
                    self._timed,
                    key,
                    lambda: reconcile(self.kube, current, self.config, self.knative, Cached(
                        service=dict(live) if live else None, children=children, body_is_fresh=fresh,
                        reconciled_before=bool(current.get("status")), unschedulable=self.unschedulable(key),
                        running_on=self.running_on(key))),
                )
            except ApiError as exc:
                self.metrics.observe_reconcile("error", time.monotonic() - started)
                if exc.status == 404:  # the function is gone
                    self._forget_if_same(key, current)
                    return None
                raise
            self.metrics.observe_reconcile(outcome.result, time.monotonic() - started)
            self.metrics.count_writes(outcome.applied, outcome.status_written, outcome.children_applied, outcome.children_deleted)
            if outcome.gone:  # deleted, and the watch has not told us yet
                self._forget_if_same(key, current)
                return None
            if not self._same_function(key, current):
                return outcome  # deleted (or replaced) while the pass ran: its results must not bring it back
            # What the pass applied, unless a watch event came meanwhile (a deletion must not be undone).
            if outcome.applied and outcome.service is not None and self.service_events[key] == service_events_before:
                self._keep_service(key, outcome.service)
            self._merge_children(key, outcome, events_before)
            if outcome.status_written:
                self.remember({**current, "status": outcome.status})
                ready, reason = summary(outcome.status)
                log.info("%s/%s: Ready=%s %s%s", *key, ready, reason, " (Service applied)" if outcome.applied else "")
            self.metrics.move_function(self.readiness.get(key), summary(outcome.status))
            self.readiness[key] = summary(outcome.status)
            if outcome.min_scale_set:
                log.info("%s/%s: pre-warm min-scale %s", *key, ", ".join(outcome.min_scale_set))
            self._set_wakeup(key, outcome.wake_at)
            return outcome

    # --- pre-warm wake-ups ------------------------------------------------------------------
    def _set_wakeup(self, key: Key, when: datetime | None, *, delay: float | None = None) -> None:
        """Reconcile `key` again at `when` (a pre-warm window's edge) or after `delay`; None cancels."""
        handle = self._wakeups.pop(key, None)
        if handle is not None:
            handle.cancel()
        if when is None and delay is None:
            return
        if delay is None:
            assert when is not None
            delay = min(max((when - datetime.now(UTC)).total_seconds(), 0.0) + WAKE_SLACK_SECONDS, WAKE_MAX_SECONDS)
        loop = asyncio.get_running_loop()
        self._wakeups[key] = loop.call_later(delay, self._start_wake, key)

    def _start_wake(self, key: Key) -> None:
        self._wakeups.pop(key, None)
        task = asyncio.get_running_loop().create_task(self._wake(key))
        self._wake_tasks.add(task)
        task.add_done_callback(self._wake_tasks.discard)

    async def _wake(self, key: Key) -> None:
        try:
            await self.reconcile(key)
        except ApiError as exc:
            log.warning("%s/%s: reconciling at a pre-warm window's edge failed: %s; retrying", *key, exc)
            if key in self.functions:
                self._set_wakeup(key, None, delay=WAKE_RETRY_SECONDS)

    def _same_function(self, key: Key, body: Mapping[str, Any]) -> bool:
        """Whether the cache still holds the function `body` is a copy of (same uid)."""
        known = self.functions.get(key)
        return known is not None and _uid(known) == _uid(body)

    def _forget_if_same(self, key: Key, body: Mapping[str, Any]) -> None:
        """Forget a function found deleted, unless a new one of the same name took its place."""
        if self._same_function(key, body):
            log.info("%s/%s: the AIFunction no longer exists; forgetting it", *key)
            self.forget(key)

    def _timed(self, key: Key, work: Callable[[], Outcome]) -> Outcome:
        """Run one pass in a worker, recording how long it has been running (for liveness)."""
        token = threading.get_ident()
        self._running[token] = (key, time.monotonic())
        try:
            return work()
        finally:
            self._running.pop(token, None)

    # --- liveness ---------------------------------------------------------------------------
    def liveness_problem(self) -> str | None:
        """Why the process needs a restart (a wedged worker, a dead settings thread), or None."""
        now = time.monotonic()
        for key, started in list(self._running.values()):
            if now - started > self.stuck_after:
                return f"a reconcile pass of {key[0]}/{key[1]} has been running for {now - started:.0f} s"
        thread = self._knative_thread
        if thread is not None and not thread.is_alive() and not self._stop.is_set():
            return f"the thread following Knative's settings in {self.config.knative_namespace} has died"
        return None

    def alive(self) -> bool:
        """Liveness: False (and a warning) when `liveness_problem` finds one."""
        problem = self.liveness_problem()
        if problem:
            log.warning("liveness check failed: %s", problem)
        return problem is None

    async def reconcile_all(self) -> None:
        """Re-check every known function (resync, Knative's settings or Eventing's CRDs changed), if this replica is the active one."""
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self._executor, self.gate.active):
            log.info("another replica is active; leaving the re-check to it")
            return
        self.children_known.clear()  # list children again, in case a watch event was missed
        results = await asyncio.gather(*(self.reconcile(key) for key in list(self.functions)), return_exceptions=True)
        for error in (r for r in results if isinstance(r, Exception)):
            log.warning("re-checking every function failed: %s", error)

    # --- Knative settings -----------------------------------------------------------------
    def start_knative_watch(self, loop: asyncio.AbstractEventLoop) -> threading.Thread:
        """Follow config-features and config-autoscaler in a thread; re-check all functions on change."""
        thread = threading.Thread(target=self._watch_knative, args=(loop,), name="aifn-knative-config", daemon=True)
        self._knative_thread = thread
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop the ConfigMap watch and the worker threads."""
        self._stop.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _watch_knative(self, loop: asyncio.AbstractEventLoop) -> None:
        """List, then watch, Knative's two ConfigMaps until stopped; any failure is logged and retried."""
        namespace = self.config.knative_namespace
        while not self._stop.is_set():
            try:
                self._follow_knative(loop, namespace)
            except ApiError as exc:
                log.warning("cannot follow %s/%s and %s: %s; using what was last seen", namespace, FEATURES_CONFIGMAP, AUTOSCALER_CONFIGMAP, exc)
            except Exception:  # noqa: BLE001  (a bad answer, a bug: the thread must outlive it)
                log.exception("following %s/%s and %s failed unexpectedly; retrying", namespace, FEATURES_CONFIGMAP, AUTOSCALER_CONFIGMAP)
            else:
                continue  # the watch request ended normally: start the next one
            self.knative_loaded.set()
            self._stop.wait(KNATIVE_RETRY_SECONDS)

    def _follow_knative(self, loop: asyncio.AbstractEventLoop, namespace: str) -> None:
        """One listing of Knative's ConfigMaps and one watch request after it."""
        data: dict[str, Mapping[str, str] | None] = {name: None for name in (FEATURES_CONFIGMAP, AUTOSCALER_CONFIGMAP)}
        listing = self.kube.request("GET", CONFIGMAPS.path(namespace))
        for item in listing.get("items") or []:
            if item["metadata"]["name"] in data:
                data[item["metadata"]["name"]] = item.get("data") or {}
        version = (listing.get("metadata") or {}).get("resourceVersion")
        self._set_knative(loop, data)
        for kind, obj in self.kube.watch_configmaps(namespace, resource_version=version, timeout_seconds=30):
            if self._stop.is_set():
                return
            name = obj["metadata"]["name"]
            if name in data:
                data[name] = None if kind == "DELETED" else (obj.get("data") or {})
                self._set_knative(loop, data)

    def _set_knative(self, loop: asyncio.AbstractEventLoop, data: Mapping[str, Mapping[str, str] | None]) -> None:
        settings = KnativeSettings(features=data[FEATURES_CONFIGMAP], autoscaler=data[AUTOSCALER_CONFIGMAP])
        changed = settings != self.knative
        self.knative = settings
        first = not self.knative_loaded.is_set()
        self.knative_loaded.set()
        if changed and not first:
            log.info("Knative settings in %s changed; re-checking every function", self.config.knative_namespace)
            asyncio.run_coroutine_threadsafe(self.reconcile_all(), loop)


def _uid(body: Mapping[str, Any]) -> str | None:
    return (body.get("metadata") or {}).get("uid")


def _key(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace")), str(meta.get("name")))
