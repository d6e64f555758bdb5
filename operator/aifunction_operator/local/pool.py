"""The replica pool: the scaling loop, and admission for the cold path (a bounded queue).

Warm requests never pass through here: Envoy sends them to the replicas the pool publishes
(data_plane.py). Requests that reach the Python activator (no replica took requests when
they arrived) `acquire()` a ready replica with room under `containerConcurrency`, or wait in a
bounded FIFO queue while replicas start; a full queue, a wait past `startupTimeout`, or a
replica that cannot start answers `Unavailable` (503 with Retry-After). A control loop samples
demand every `tick` seconds (and at once when a request queues): the activator's requests
plus Envoy's at the replicas; asks the `Autoscaler` how many replicas are wanted, starts or
drains replicas, publishes the replica set to Envoy, and replaces replicas whose process died.
A draining replica is published as DRAINING and stopped once neither Envoy nor the activator
has a request at it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from ..spec.model import PrewarmSchedule, Scaling
from ..spec.prewarm import Prewarm, prewarm_at

from .autoscaler import Autoscaler, ScalingPolicy
from .data_plane import DataPlane, HostLoad, Load
from .envoy_config import ReplicaAddress
from .envoy_process import EnvoyStartError
from .metrics import GatewayMetrics
from .replicas import Replica, State
from .tritonserver import TritonProcess, TritonStartError, TritonStartTimeout

log = logging.getLogger("aifn.run")

START_FAILURE_BACKOFF = 2.0
DEFAULT_RETRY_AFTER = 2


_LOAD_FAILURE = re.compile(r'^E\d{4} [^\]]*\] "(failed to load .*?)(?:\\n|"$)')


def start_failure(message: str, log_text: str) -> str:
    """The first line of a start error, plus Triton's own 'failed to load' line from its log when there is one."""
    reasons = [m.group(1) for m in map(_LOAD_FAILURE.match, log_text.splitlines()) if m]
    return message.splitlines()[0].rstrip(":") + (f": {reasons[-1]}" if reasons else "")


class Unavailable(Exception):
    """No replica can take the request now; `retry_after` is a hint in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ReplicaPool:
    """Triton replicas of one function, scaled by demand between min and max replicas."""

    def __init__(
        self,
        new_process: Callable[[int], TritonProcess],
        policy: ScalingPolicy,
        metrics: GatewayMetrics,
        *,
        data_plane: DataPlane | None = None,  # None: no Envoy (the pool is only inspected, never run)
        queue_limit: int = 256,
        startup_timeout: float = 900.0,
        tick: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        schedules: Sequence[PrewarmSchedule] = (),
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy
        self.metrics = metrics
        self.queue_limit = queue_limit
        self.startup_timeout = startup_timeout
        self.replicas: list[Replica] = []
        self.last_cold_start: dict[str, object] | None = None
        # Called before a replica is stopped (e.g. to close client connections to it).
        self.before_stop: list[Callable[[Replica], Awaitable[None]]] = []
        self.new_process = new_process
        self.data_plane = data_plane
        self.envoy = Load()  # the last sample of Envoy's requests at the replicas
        self._hosts: dict[int, HostLoad] = {}
        self._tick = tick
        self._clock = clock
        self._autoscaler = Autoscaler(policy, clock())
        self._waiters: deque[asyncio.Future[Replica]] = deque()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._next_id = 1
        self._arrivals = 0  # activator requests since the last autoscaler sample (for the rps metric)
        self._backoff_until = 0.0
        self._closing = False
        self._prewarm_scaling = Scaling(min_replicas=policy.min_replicas, schedules=tuple(schedules))
        self._wall_clock = wall_clock
        self._prewarm: Prewarm | None = None

    # -- requests -------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Requests waiting for a replica."""
        return sum(1 for f in self._waiters if not f.done())

    @property
    def in_flight(self) -> int:
        """Requests at a replica right now (through the activator or Envoy), or waiting in Envoy for a slot."""
        return sum(r.in_flight for r in self.replicas) + self.envoy.demand

    async def acquire(self) -> Replica:
        """A ready replica with a slot reserved for the caller; raises Unavailable."""
        if self._closing:
            raise Unavailable("the function is shutting down", DEFAULT_RETRY_AFTER)
        self._arrivals += 1
        replica = self._pick()
        if replica is not None:
            replica.in_flight += 1
            return replica
        if self.queued >= self.queue_limit:
            raise Unavailable(
                f"queue full: {self.queued} requests are already waiting for a ready Triton replica "
                f"(limit {self.queue_limit})",
                self._retry_after(),
            )
        future: asyncio.Future[Replica] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._publish()
        self._wake.set()
        try:
            return await asyncio.wait_for(future, self.startup_timeout)
        except asyncio.TimeoutError:
            raise Unavailable(
                f"no Triton replica was ready within startupTimeout ({self.startup_timeout:.0f}s)", self._retry_after()
            ) from None
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result())
            raise
        finally:
            if future in self._waiters:
                self._waiters.remove(future)
            self._publish()

    def release(self, replica: Replica) -> None:
        """Give back the slot taken by `acquire`."""
        replica.in_flight -= 1
        self._dispatch()
        if replica.state is State.DRAINING and replica.in_flight == 0:
            self._wake.set()

    def record_response(self, replica: Replica) -> None:
        """Note a response from `replica`; logs the cold start when it is the replica's first."""
        if replica.record_response():
            stages = replica.cold_start
            log.info("replica %d cold start: %s", replica.id, stages.describe())
            if replica.from_zero:
                self.last_cold_start = {"replica": replica.id, **stages.as_dict()}

    def report_broken(self, replica: Replica) -> None:
        """A request to `replica` failed at the connection level: check its process now."""
        self._wake.set()

    # -- scaling --------------------------------------------------------------------------

    async def run(self) -> None:
        """The control loop; runs until `close()`."""
        while not self._closing:
            await self._control()
            try:
                await asyncio.wait_for(self._wake.wait(), self._tick)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def hosts(self) -> dict[int, HostLoad]:
        """Envoy's requests per replica port (empty when Envoy does not answer)."""
        if self.data_plane is None:
            return {}
        try:
            self._hosts = await self.data_plane.hosts()
        except (OSError, ValueError, asyncio.TimeoutError, EnvoyStartError) as exc:
            log.warning("envoy's /clusters did not answer: %s", exc)
        return self._hosts

    async def _control(self) -> None:
        """One round: sample Envoy, decide, publish the replica set, stop drained replicas."""
        if self.data_plane is None:
            raise RuntimeError("a ReplicaPool without a data plane cannot run")
        arrivals_before = self.envoy.total
        await self._sample()
        if self._closing:
            return
        self._arrivals += max(0, self.envoy.total - arrivals_before)
        self._scale()
        try:
            version = await self.data_plane.publish(self._addresses())
        except OSError as exc:
            log.error("cannot write Envoy's replica set: %s", exc)
            return
        draining = [r for r in self.replicas if r.state is State.DRAINING]
        for replica in draining:
            replica.drain_version = replica.drain_version or version
        if draining:
            hosts = await self.hosts()
            for replica in draining:
                if self._drained(replica, hosts):
                    self.replicas.remove(replica)
                    self._spawn(self._stop(replica))
        self._publish()

    async def _sample(self) -> None:
        if self.data_plane is None:
            return
        try:
            self.envoy = await self.data_plane.sample()
        except (OSError, ValueError, asyncio.TimeoutError, EnvoyStartError) as exc:
            log.warning("envoy's stats did not answer: %s", exc)

    def _addresses(self) -> list[ReplicaAddress]:
        """The replicas Envoy should know: ready ones take requests, draining ones finish theirs."""
        return [ReplicaAddress(r.process.ports.http, r.process.ports.grpc, draining=r.state is State.DRAINING)
                for r in self.replicas if r.state in (State.READY, State.DRAINING)]

    def _drained(self, replica: Replica, hosts: dict[int, HostLoad]) -> bool:
        """No request left at `replica`: none from the activator, none from Envoy once it applied the DRAINING mark."""
        if replica.in_flight or self.envoy.applied_version < (replica.drain_version or 0):
            return False
        ports = (replica.process.ports.http, replica.process.ports.grpc)
        return all(hosts.get(port, HostLoad()).active == 0 for port in ports)

    async def close(self, drain_timeout: float = 10.0) -> None:
        """Refuse new requests, let in-flight ones finish (up to `drain_timeout`), stop every replica."""
        self._closing = True
        self._wake.set()
        for future in self._waiters:
            if not future.done():
                future.set_exception(Unavailable("the function is shutting down", DEFAULT_RETRY_AFTER))
        deadline = self._clock() + drain_timeout
        while self.in_flight and self._clock() < deadline:
            await asyncio.sleep(0.05)
            await self._sample()
        for task in list(self._starting):
            task.cancel()  # replicas still starting are stopped below with the others
        await asyncio.gather(*self._tasks, return_exceptions=True)  # stops already under way finish
        await asyncio.gather(*(self._stop(r, grace=5.0) for r in self.replicas), return_exceptions=True)
        self.replicas.clear()
        self._publish()

    def prewarm(self) -> Prewarm | None:
        """The pre-warm floor and windows now (spec.scaling.schedules; None without), recomputed once an edge passes."""
        if not self._prewarm_scaling.schedules:
            return None
        now = self._wall_clock()
        known = self._prewarm
        if known is None or (known.changes_at is not None and now >= known.changes_at):
            self._prewarm = prewarm_at(self._prewarm_scaling, now)
            if known is None or known.min_replicas != self._prewarm.min_replicas:
                windows = ", ".join(f"{w.name} until {w.end:%H:%M} UTC" for w in self._prewarm.active) or "no window open"
                log.info("pre-warm: at least %d replicas (%s)", self._prewarm.min_replicas, windows)
        return self._prewarm

    def describe(self, hosts: dict[int, HostLoad] | None = None) -> dict[str, object]:
        """A JSON-ready snapshot: replicas (with Envoy's requests per replica from `hosts`), queue, policy, pre-warm, last cold start."""
        prewarm = self.prewarm()
        return {
            "replicas": [r.describe(hosts or {}) for r in self.replicas],
            "queued": self.queued,
            "in_flight": self.in_flight,
            "last_cold_start": self.last_cold_start,
            "policy": {
                "min_replicas": self.policy.min_replicas,
                "max_replicas": self.policy.max_replicas,
                "metric": self.policy.metric,
                "target_concurrency": self.policy.target_concurrency,
                "target_rps": self.policy.target_rps,
                "initial_replicas": self.policy.initial_replicas,
                "container_concurrency": self.policy.container_concurrency,
                "scale_to_zero_after": self.policy.to_zero_after,
                "queue_limit": self.queue_limit,
                "startup_timeout": self.startup_timeout,
            },
            "prewarm": None if prewarm is None else {
                "min_replicas": prewarm.min_replicas,
                "windows": [w.as_status() for w in prewarm.active],
                "next": prewarm.next.as_status() if prewarm.next else None,
            },
        }

    def _scale(self) -> None:
        now = self._clock()
        self._reap_exited()
        self._autoscaler.observe(now, self.in_flight + self.queued, self._arrivals)
        self._arrivals = 0
        active = [r for r in self.replicas if r.state in (State.STARTING, State.READY)]
        prewarm = self.prewarm()
        desired = self._autoscaler.decide(now, len(active), prewarm.min_replicas if prewarm else 0)
        if desired > len(active) and now >= self._backoff_until:
            from_zero = not any(r.state is State.READY for r in active)
            for _ in range(desired - len(active)):
                self._launch(from_zero)
        elif desired < len(active):
            ready = sorted((r for r in active if r.state is State.READY), key=lambda r: r.in_flight)
            for replica in ready[: len(active) - desired]:
                replica.state = State.DRAINING
                log.info("replica %d draining (%d in flight; %d replicas wanted)", replica.id, replica.in_flight, desired)
        self._publish()

    def _reap_exited(self) -> None:
        for replica in [r for r in self.replicas if r.state in (State.READY, State.DRAINING) and r.exited()]:
            replica.state = State.FAILED
            self.replicas.remove(replica)
            self.metrics.replica_failures.inc()
            log.warning(
                "replica %d (pid %s) exited with status %s; %d requests in flight fail, a new replica starts on demand",
                replica.id, replica.process.pid, replica.process.returncode, replica.in_flight,
            )
            self._spawn(self._stop(replica, grace=0.0))

    def _launch(self, from_zero: bool) -> None:
        replica = Replica(self._next_id, self.new_process(self._next_id), from_zero=from_zero)
        self._next_id += 1
        self.replicas.append(replica)
        self.metrics.cold_starts.labels(self.metrics.function, str(from_zero).lower()).inc()
        log.info("replica %d starting (%s)", replica.id, "scale from zero" if from_zero else "scale up")
        task = self._spawn(self._start(replica))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start(self, replica: Replica) -> None:
        try:
            await replica.start(self.startup_timeout)
        except Exception as exc:  # noqa: BLE001 - TritonStartError, or OSError (EMFILE, ENOSPC, ...) spawning it
            # Whatever went wrong, the replica leaves the pool at once: left STARTING, it would
            # hold every queued request until startupTimeout.
            replica.state = State.FAILED
            if replica in self.replicas:
                self.replicas.remove(replica)
            # Before any await: the control loop must not start another replica at once in its place.
            self._backoff_until = self._clock() + START_FAILURE_BACKOFF
            try:
                await self._stop(replica, grace=0.0)
            except Exception:  # noqa: BLE001 - nothing may have been started
                log.exception("replica %d: cleaning up after the failed start", replica.id)
            self.metrics.replica_failures.inc()
            if isinstance(exc, TritonStartTimeout):
                self.metrics.cold_start_timeouts.inc()
            message = str(exc) if isinstance(exc, TritonStartError) else f"replica {replica.id}: {type(exc).__name__}: {exc}"
            if isinstance(exc, TritonStartError):
                log.error("replica %d failed to start: %s", replica.id, exc)
            else:
                log.error("replica %d failed to start: %s", replica.id, message, exc_info=exc)
            if not any(r.state in (State.STARTING, State.READY) for r in self.replicas):
                self._fail_waiters(Unavailable(
                    f"Triton could not start: {start_failure(message, replica.process.log_tail(100_000))}",
                    math.ceil(START_FAILURE_BACKOFF),
                ))
            self._wake.set()
            return
        self.metrics.cold_start_seconds.observe(replica.cold_start.model_ready or 0.0)
        log.info("replica %d ready (pid %d): %s", replica.id, replica.process.pid or 0, replica.cold_start.describe())
        self._dispatch()
        self._wake.set()

    async def _stop(self, replica: Replica, grace: float = 10.0) -> None:
        for hook in self.before_stop:
            await hook(replica)
        await replica.stop(grace=grace)
        log.info("replica %d stopped", replica.id)
        self._publish()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _pick(self) -> Replica | None:
        limit = self.policy.container_concurrency
        ready = [r for r in self.replicas if r.state is State.READY and (limit is None or r.in_flight < limit)]
        return min(ready, key=lambda r: r.in_flight, default=None)

    def _dispatch(self) -> None:
        dispatched = False
        while self._waiters:
            future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            replica = self._pick()
            if replica is None:
                break
            self._waiters.popleft()
            replica.in_flight += 1
            future.set_result(replica)
            dispatched = True
        if dispatched:
            self._publish()

    def _fail_waiters(self, error: Unavailable) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)
        self._publish()

    def _retry_after(self) -> int:
        last = self.last_cold_start or {}
        seconds = last.get("model_ready")
        return max(1, math.ceil(float(seconds))) if isinstance(seconds, (int, float)) else DEFAULT_RETRY_AFTER

    def _publish(self) -> None:
        fn = self.metrics.function
        self.metrics.queue_depth.set(self.queued)
        for state in State:
            self.metrics.replicas.labels(fn, state.value).set(sum(1 for r in self.replicas if r.state is state))
