"""The local autoscaler's decisions, driven by a hand-advanced clock (pure; no Triton)."""

from __future__ import annotations

from aifunction_operator.local.autoscaler import Autoscaler, ScalingPolicy
from aifunction_operator.spec.model import PrewarmSchedule, Scaling

POLICY = ScalingPolicy(
    min_replicas=0, max_replicas=3, target_concurrency=4, container_concurrency=16,
    idle_timeout=10.0, panic_window=1.0, stable_window=6.0, step_interval=2.0,
)


class Clocked:
    """An autoscaler plus the replica count a caller would keep, advanced in 0.1 s ticks."""

    def __init__(self, policy: ScalingPolicy = POLICY) -> None:
        self.now = 0.0
        self.replicas = 0
        self.scaler = Autoscaler(policy, self.now)

    def run(self, seconds: float, demand: int) -> list[int]:
        history = []
        for _ in range(round(seconds / 0.1)):
            self.now = round(self.now + 0.1, 6)
            self.scaler.observe(self.now, demand)
            self.replicas = self.scaler.decide(self.now, self.replicas)
            history.append(self.replicas)
        return history


def test_no_demand_no_replicas() -> None:
    clocked = Clocked()
    assert set(clocked.run(30, demand=0)) == {0}


def test_first_request_starts_one_replica_at_once() -> None:
    clocked = Clocked()
    assert clocked.run(0.1, demand=1) == [1]


def test_demand_above_target_times_replicas_scales_up_at_once_up_to_max() -> None:
    clocked = Clocked()
    assert clocked.run(0.1, demand=9) == [3]  # ceil(9 / 4)
    assert clocked.run(0.1, demand=64) == [3]  # capped at maxReplicas


def test_scale_down_is_gradual_and_waits_for_the_stable_window() -> None:
    clocked = Clocked()
    clocked.run(1, demand=12)
    assert clocked.replicas == 3
    history = clocked.run(9, demand=1)  # still busy (so not idle), but one replica is enough
    assert history[: int(5.5 / 0.1)] == [3] * int(5.5 / 0.1), "scaled down inside the stable window"
    drops = [i for i in range(1, len(history)) if history[i] < history[i - 1]]
    assert [history[i - 1] - history[i] for i in drops] == [1, 1], history
    assert drops[1] - drops[0] >= 20, "less than step_interval between scale-down steps"
    assert clocked.replicas == 1


def test_idle_timeout_scales_to_zero_from_any_count() -> None:
    clocked = Clocked()
    clocked.run(1, demand=12)
    history = clocked.run(12, demand=0)
    first_zero = history.index(0)
    assert abs((first_zero + 1) * 0.1 - 10.0) < 0.15, "zero not reached at the idle timeout"


def test_scale_to_zero_retention_and_delay_extend_the_idle_timeout() -> None:
    policy = ScalingPolicy(max_replicas=2, target_concurrency=1, idle_timeout=2.0, scale_to_zero_retention=5.0)
    assert policy.to_zero_after == 5.0
    assert ScalingPolicy(idle_timeout=2.0, scale_down_delay=7.0).to_zero_after == 7.0
    clocked = Clocked(policy)
    clocked.run(0.5, demand=1)
    history = clocked.run(6, demand=0)
    assert history[: int(4.9 / 0.1)] == [1] * int(4.9 / 0.1)
    assert history[-1] == 0


def test_min_replicas_are_kept_warm() -> None:
    clocked = Clocked(ScalingPolicy(min_replicas=1, max_replicas=3, target_concurrency=2, idle_timeout=1.0))
    assert clocked.run(0.1, demand=0) == [1]
    clocked.run(1, demand=6)
    assert clocked.replicas == 3
    assert clocked.run(30, demand=0)[-1] == 1


def test_policy_from_spec_scaling() -> None:
    scaling = Scaling(min_replicas=0, max_replicas=3, target_concurrency=4, container_concurrency=16,
                      scale_to_zero_retention=30, scale_down_delay=5)
    policy = ScalingPolicy.from_scaling(scaling, idle_timeout=5.0, default_max_replicas=8)
    assert (policy.max_replicas, policy.target_concurrency, policy.container_concurrency) == (3, 4.0, 16)
    assert policy.to_zero_after == 30.0
    unbounded = ScalingPolicy.from_scaling(Scaling(container_concurrency=0), idle_timeout=60.0, default_max_replicas=2)
    assert (unbounded.max_replicas, unbounded.container_concurrency, unbounded.target_concurrency) == (2, None, 100.0)
    assert ScalingPolicy.from_scaling(Scaling(container_concurrency=8), idle_timeout=1, default_max_replicas=1).target_concurrency == 8.0


class ArrivalsClocked(Clocked):
    """Clocked, fed arrivals at a steady rate (for the rps metric); each request stays `service` seconds."""

    def run_rate(self, seconds: float, rate: float, service: float = 0.05) -> list[int]:
        history, owed = [], 0.0
        for _ in range(round(seconds / 0.1)):
            self.now = round(self.now + 0.1, 6)
            owed += rate * 0.1
            arrivals = int(owed)
            owed -= arrivals
            self.scaler.observe(self.now, round(rate * service), arrivals)
            self.replicas = self.scaler.decide(self.now, self.replicas)
            history.append(self.replicas)
        return history


RPS = ScalingPolicy(metric="rps", max_replicas=4, target_rps=10, idle_timeout=5.0)


def test_rps_metric_scales_on_the_arrival_rate_not_on_concurrency() -> None:
    clocked = ArrivalsClocked(RPS)
    assert clocked.run_rate(0.1, rate=10)[-1] == 1, "the first arrival starts one replica"
    assert clocked.run_rate(2, rate=25)[-1] == 3  # ceil(25 / 10), although only ~1 request is ever in flight
    assert clocked.run_rate(2, rate=100)[-1] == 4  # capped at maxReplicas
    history = clocked.run_rate(15, rate=8)
    assert history[-1] == 1 and sorted(history, reverse=True) == history, "scale-down is gradual and monotonic"
    assert clocked.run_rate(6, rate=0)[-1] == 0, "no arrivals for the idle timeout scales to zero"


def test_rps_metric_keeps_a_replica_for_requests_still_queued() -> None:
    clocked = Clocked(RPS)
    clocked.scaler.observe(0.1, demand=1, arrivals=1)
    assert clocked.scaler.decide(0.1, 0) == 1
    # The request waits (a slow cold start): no arrivals for 20 s, yet it is still inside.
    for step in range(2, 200):
        clocked.scaler.observe(step / 10, demand=1, arrivals=0)
    assert clocked.scaler.decide(20.0, 0) == 1, "a queued request must still get a replica"
    assert clocked.scaler.decide(20.0, 1) == 1


def test_initial_replicas_start_before_any_request_then_the_rules_take_over() -> None:
    clocked = Clocked(ScalingPolicy(max_replicas=4, target_concurrency=4, idle_timeout=10.0, initial_replicas=3))
    history = clocked.run(5.9, demand=0)
    assert set(history) == {3}, "initialReplicas are started at once and held for the stable window"
    history = clocked.run(10, demand=0)
    assert history[-1] == 0 and sorted(history, reverse=True) == history
    assert clocked.run(0.1, demand=1) == [1], "after that, scale from zero as usual"


def test_initial_replicas_are_clamped_and_min_replicas_still_hold() -> None:
    capped = Clocked(ScalingPolicy(max_replicas=2, initial_replicas=5, idle_timeout=1.0))
    assert capped.run(0.1, demand=0) == [2]
    warm = Clocked(ScalingPolicy(min_replicas=2, max_replicas=4, initial_replicas=3, idle_timeout=1.0))
    assert warm.run(0.1, demand=0) == [3]
    assert warm.run(30, demand=0)[-1] == 2


def test_policy_reads_metric_rps_target_and_initial_replicas() -> None:
    policy = ScalingPolicy.from_scaling(
        Scaling(metric="rps", target_requests_per_second=50, initial_replicas=2), idle_timeout=5.0, default_max_replicas=4
    )
    assert (policy.metric, policy.target_rps, policy.initial_replicas) == ("rps", 50.0, 2)
    assert ScalingPolicy.from_scaling(Scaling(metric="rps"), idle_timeout=5.0, default_max_replicas=4).target_rps == 200.0


def test_a_prewarm_floor_starts_replicas_without_demand_holds_them_and_lets_go_after() -> None:
    clocked = Clocked()
    floors = [2] * 100 + [0] * 200  # a window open for 10 s, then none
    history = []
    for floor in floors:
        clocked.now = round(clocked.now + 0.1, 6)
        clocked.scaler.observe(clocked.now, 0)
        clocked.replicas = clocked.scaler.decide(clocked.now, clocked.replicas, floor)
        history.append(clocked.replicas)
    assert history[0] == 2, "the floor starts its replicas at once"
    assert set(history[:100]) == {2}, "no demand, yet the floor holds"
    assert history[-1] == 0, "after the window the usual rules scale to zero"


def test_a_prewarm_floor_never_exceeds_max_replicas() -> None:
    clocked = Clocked()
    assert clocked.scaler.decide(0.1, 0, floor=10) == POLICY.max_replicas


def test_the_local_maximum_makes_room_for_a_window() -> None:
    scaling = Scaling(schedules=(PrewarmSchedule("big", "@daily", 3600, 6),))
    assert ScalingPolicy.from_scaling(scaling, idle_timeout=60.0, default_max_replicas=4).max_replicas == 6
