"""How many Triton replicas `aifn run` wants: pure decisions from demand samples and a clock.

Demand is measured as Knative's autoscaler measures it, per `spec.scaling.metric`:
`concurrency` is the number of requests inside the gateway (proxied to a replica or queued
for one), its peak over a window; `rps` is the arrival rate of requests over a window.
The rules follow Knative's autoscaler, shortened for one machine:

- scale up at once when the demand of the last `panic_window` seconds exceeds the target
  x replicas (a request arriving at zero replicas starts one);
- `initial_replicas` are wanted from the start, before any request, and held for the first
  `stable_window` (Knative's initial scale); then the rules below take over;
- scale down gradually: only to what the peak of the last `stable_window` seconds needs
  (at least `scale_down_delay`), one replica per `step_interval`;
- scale to zero (when `min_replicas` is 0) once there was no demand for `to_zero_after`
  seconds: the idle timeout, but never less than `scaleToZeroRetention` or `scaleDownDelay`;
- always between `min_replicas` and `max_replicas`; a pre-warm window (spec.scaling.schedules)
  raises the minimum while it is warming or open: the caller passes that `floor`.

Nothing here reads a clock or starts a process; the caller passes `now` and acts on the answer.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ..spec.model import Scaling

DEFAULT_TARGET_CONCURRENCY = 100  # Knative's container-concurrency-target-default
DEFAULT_TARGET_RPS = 200  # Knative's requests-per-second-target-default
DEFAULT_STABLE_WINDOW = 6.0
DEFAULT_PANIC_WINDOW = 1.0
DEFAULT_STEP_INTERVAL = 2.0


@dataclass(frozen=True)
class ScalingPolicy:
    """The numbers the autoscaler works with, in replicas, requests and seconds."""

    min_replicas: int = 0
    max_replicas: int = 1
    metric: str = "concurrency"  # or "rps"
    target_concurrency: float = DEFAULT_TARGET_CONCURRENCY
    target_rps: float = DEFAULT_TARGET_RPS
    initial_replicas: int = 0
    container_concurrency: int | None = None
    idle_timeout: float = 60.0
    scale_down_delay: float = 0.0
    scale_to_zero_retention: float = 0.0
    panic_window: float = DEFAULT_PANIC_WINDOW
    stable_window: float = DEFAULT_STABLE_WINDOW
    step_interval: float = DEFAULT_STEP_INTERVAL

    @classmethod
    def from_scaling(cls, scaling: Scaling, *, idle_timeout: float, default_max_replicas: int) -> ScalingPolicy:
        """The policy for a function's `spec.scaling`, with `aifn run`'s idle timeout."""
        max_replicas = scaling.max_replicas or max(default_max_replicas, scaling.min_replicas, *(s.min_replicas for s in scaling.schedules), 1)
        target = scaling.target_concurrency or scaling.container_concurrency or DEFAULT_TARGET_CONCURRENCY
        return cls(
            min_replicas=scaling.min_replicas,
            max_replicas=max_replicas,
            metric=scaling.metric,
            target_concurrency=float(target),
            target_rps=float(scaling.target_requests_per_second or DEFAULT_TARGET_RPS),
            initial_replicas=scaling.initial_replicas or 0,
            container_concurrency=scaling.container_concurrency or None,
            idle_timeout=idle_timeout,
            scale_down_delay=float(scaling.scale_down_delay or 0),
            scale_to_zero_retention=float(scaling.scale_to_zero_retention or 0),
        )

    @property
    def to_zero_after(self) -> float:
        """Seconds without demand before the last replica goes."""
        return max(self.idle_timeout, self.scale_to_zero_retention, self.scale_down_delay)

    def clamp(self, replicas: int, floor: int = 0) -> int:
        """`replicas` kept within min (or a higher pre-warm `floor`) and max."""
        return max(self.min_replicas, min(floor, self.max_replicas), min(self.max_replicas, replicas))


class Autoscaler:
    """Keeps recent demand samples and answers how many replicas are wanted now."""

    def __init__(self, policy: ScalingPolicy, now: float) -> None:
        if policy.metric not in ("concurrency", "rps"):
            raise ValueError(f"spec.scaling.metric: {policy.metric!r} is not supported (concurrency or rps)")
        self.policy = policy
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, requests inside, arrivals since last)
        self._last_active = now
        self._last_change = now
        self._hold_initial_until = now + policy.stable_window

    @property
    def last_active(self) -> float:
        """When demand was last above zero (or when the autoscaler was created)."""
        return self._last_active

    def observe(self, now: float, demand: int, arrivals: int = 0) -> None:
        """Record the requests inside the gateway (in flight plus queued) at `now`, and those that arrived since the last call."""
        self._samples.append((now, demand, arrivals))
        if demand > 0 or arrivals > 0:
            self._last_active = now
        horizon = now - max(self.policy.panic_window, self.policy.stable_window, self.policy.scale_down_delay)
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def decide(self, now: float, current: int, floor: int = 0) -> int:
        """Replicas wanted now, given `current` replicas starting or ready and the pre-warm `floor`."""
        policy = self.policy
        held = policy.initial_replicas if now < self._hold_initial_until else 0
        needed_now = self._needed(now, policy.panic_window)
        if max(needed_now, held, floor) > current:
            return self._change(now, current, policy.clamp(max(needed_now, held), floor))
        if held:
            return policy.clamp(current, floor)
        if now - self._last_active >= policy.to_zero_after and needed_now == 0:
            return self._change(now, current, policy.clamp(0, floor))
        stable_window = max(policy.stable_window, policy.scale_down_delay)
        wanted_stable = max(self._needed(now, stable_window), 1)
        if wanted_stable < current and now - self._last_change >= policy.step_interval:
            return self._change(now, current, policy.clamp(current - 1, floor))
        return policy.clamp(current, floor)

    def _needed(self, now: float, window: float) -> int:
        """Replicas the demand of the last `window` seconds needs at the target."""
        recent = [(d, a) for t, d, a in self._samples if t >= now - window]
        peak = max((d for d, _ in recent), default=0)
        if self.policy.metric == "rps":
            rate = sum(a for _, a in recent) / window
            # Requests still inside the gateway need a replica whatever the rate.
            return max(math.ceil(rate / self.policy.target_rps), 1 if peak > 0 else 0)
        return math.ceil(peak / self.policy.target_concurrency)

    def _change(self, now: float, current: int, wanted: int) -> int:
        if wanted != current:
            self._last_change = now
        return wanted
