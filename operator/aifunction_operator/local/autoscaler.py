"""How many Triton replicas `aifn run` wants: pure decisions from demand samples and a clock.

Demand is the number of requests inside the gateway (proxied to a replica or queued for one).
The rules follow Knative's concurrency autoscaler, shortened for one machine:

- scale up at once when the peak demand of the last `panic_window` seconds exceeds
  `target_concurrency` x replicas (a request arriving at zero replicas starts one);
- scale down gradually: only to what the peak of the last `stable_window` seconds needs
  (at least `scale_down_delay`), one replica per `step_interval`;
- scale to zero (when `min_replicas` is 0) once there was no demand for `to_zero_after`
  seconds: the idle timeout, but never less than `scaleToZeroRetention` or `scaleDownDelay`;
- always between `min_replicas` and `max_replicas`.

Nothing here reads a clock or starts a process; the caller passes `now` and acts on the answer.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ..spec.model import Scaling

DEFAULT_TARGET_CONCURRENCY = 100  # Knative's container-concurrency-target-default
DEFAULT_STABLE_WINDOW = 6.0
DEFAULT_PANIC_WINDOW = 1.0
DEFAULT_STEP_INTERVAL = 2.0


@dataclass(frozen=True)
class ScalingPolicy:
    """The numbers the autoscaler works with, in replicas, requests and seconds."""

    min_replicas: int = 0
    max_replicas: int = 1
    target_concurrency: float = DEFAULT_TARGET_CONCURRENCY
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
        max_replicas = scaling.max_replicas or max(default_max_replicas, scaling.min_replicas, 1)
        target = scaling.target_concurrency or scaling.container_concurrency or DEFAULT_TARGET_CONCURRENCY
        return cls(
            min_replicas=scaling.min_replicas,
            max_replicas=max_replicas,
            target_concurrency=float(target),
            container_concurrency=scaling.container_concurrency or None,
            idle_timeout=idle_timeout,
            scale_down_delay=float(scaling.scale_down_delay or 0),
            scale_to_zero_retention=float(scaling.scale_to_zero_retention or 0),
        )

    @property
    def to_zero_after(self) -> float:
        """Seconds without demand before the last replica goes."""
        return max(self.idle_timeout, self.scale_to_zero_retention, self.scale_down_delay)

    def clamp(self, replicas: int) -> int:
        """`replicas` kept within min and max."""
        return max(self.min_replicas, min(self.max_replicas, replicas))


class Autoscaler:
    """Keeps recent demand samples and answers how many replicas are wanted now."""

    def __init__(self, policy: ScalingPolicy, now: float) -> None:
        self.policy = policy
        self._samples: deque[tuple[float, int]] = deque()
        self._last_active = now
        self._last_change = now

    @property
    def last_active(self) -> float:
        """When demand was last above zero (or when the autoscaler was created)."""
        return self._last_active

    def observe(self, now: float, demand: int) -> None:
        """Record the demand (requests in flight plus queued) at `now`."""
        self._samples.append((now, demand))
        if demand > 0:
            self._last_active = now
        horizon = now - max(self.policy.panic_window, self.policy.stable_window, self.policy.scale_down_delay)
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def decide(self, now: float, current: int) -> int:
        """Replicas wanted now, given `current` replicas starting or ready."""
        policy = self.policy
        wanted_now = self._needed(self._peak(now, policy.panic_window))
        if wanted_now > current:
            return self._change(now, current, policy.clamp(wanted_now))
        if now - self._last_active >= policy.to_zero_after and self._peak(now, policy.panic_window) == 0:
            return self._change(now, current, policy.clamp(0))
        stable_window = max(policy.stable_window, policy.scale_down_delay)
        wanted_stable = max(self._needed(self._peak(now, stable_window)), 1)
        if wanted_stable < current and now - self._last_change >= policy.step_interval:
            return self._change(now, current, policy.clamp(current - 1))
        return policy.clamp(current)

    def _needed(self, demand: int) -> int:
        return math.ceil(demand / self.policy.target_concurrency) if demand > 0 else 0

    def _peak(self, now: float, window: float) -> int:
        return max((d for t, d in self._samples if t >= now - window), default=0)

    def _change(self, now: float, current: int, wanted: int) -> int:
        if wanted != current:
            self._last_change = now
        return wanted
