"""Scheduled pre-warm windows (spec/prewarm.py), case by case: the floor, the windows and the next edge at a moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest

from aifunction_operator.spec.model import PrewarmSchedule, Scaling
from aifunction_operator.spec.prewarm import prewarm_at

# Weekday mornings in Berlin: 08:00-09:00 local, warm from 07:50 (CET is UTC+1 in winter, CEST UTC+2 in summer).
MORNING = PrewarmSchedule("morning", "0 8 * * MON-FRI", duration=3600, min_replicas=3, timezone="Europe/Berlin", lead_time=600)
NOON = PrewarmSchedule("noon", "30 11 * * *", duration=1800, min_replicas=2)  # UTC, default lead 5m
EVERY_MINUTE = PrewarmSchedule("busy", "* * * * *", duration=120, min_replicas=4, lead_time=60)  # windows overlap
NIGHTLY = PrewarmSchedule("nightly", "50 23 * * *", duration=1200, min_replicas=2, lead_time=0)  # crosses midnight


@dataclass(frozen=True)
class Row:
    name: str
    schedules: tuple[PrewarmSchedule, ...]
    now: str  # UTC
    floor: int
    active: tuple[tuple[str, str, str], ...]  # (name, start, end), UTC
    next: tuple[str, str] | None  # (name, warmFrom)
    changes_at: str | None
    min_replicas: int = 1


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


ROWS = [
    Row("before the lead time: the spec's floor, the next window is named", (MORNING,), "2026-11-30T06:49:59Z", 1, (),
        ("morning", "2026-11-30T06:50:00Z"), "2026-11-30T06:50:00Z"),
    Row("warming: the window's floor before it starts", (MORNING,), "2026-11-30T06:50:00Z", 3,
        (("morning", "2026-11-30T07:00:00Z", "2026-11-30T08:00:00Z"),), ("morning", "2026-12-01T06:50:00Z"), "2026-11-30T08:00:00Z"),
    Row("open", (MORNING,), "2026-11-30T07:59:59Z", 3,
        (("morning", "2026-11-30T07:00:00Z", "2026-11-30T08:00:00Z"),), ("morning", "2026-12-01T06:50:00Z"), "2026-11-30T08:00:00Z"),
    Row("the end is exclusive", (MORNING,), "2026-11-30T08:00:00Z", 1, (), ("morning", "2026-12-01T06:50:00Z"), "2026-12-01T06:50:00Z"),
    Row("Friday's window is followed by Monday's", (MORNING,), "2026-12-04T08:30:00Z", 1, (),
        ("morning", "2026-12-07T06:50:00Z"), "2026-12-07T06:50:00Z"),
    Row("summer time: 08:00 in Berlin is 06:00 UTC", (MORNING,), "2026-07-01T06:30:00Z", 3,
        (("morning", "2026-07-01T06:00:00Z", "2026-07-01T07:00:00Z"),), ("morning", "2026-07-02T05:50:00Z"), "2026-07-01T07:00:00Z"),
    Row("two schedules: the higher floor of those active, the earliest edge", (MORNING, NOON), "2026-11-30T11:27:00Z", 2,
        (("noon", "2026-11-30T11:30:00Z", "2026-11-30T12:00:00Z"),), ("morning", "2026-12-01T06:50:00Z"), "2026-11-30T12:00:00Z"),
    Row("spec.scaling.minReplicas above the window's: the spec's floor", (NOON,), "2026-11-30T11:40:00Z", 5,
        (("noon", "2026-11-30T11:30:00Z", "2026-11-30T12:00:00Z"),), ("noon", "2026-12-01T11:25:00Z"), "2026-11-30T12:00:00Z",
        min_replicas=5),
    Row("overlapping occurrences of one schedule merge into one window", (EVERY_MINUTE,), "2026-11-30T10:00:30Z", 4,
        (("busy", "2026-11-30T09:59:00Z", "2026-11-30T10:03:00Z"),), ("busy", "2026-11-30T10:01:00Z"), "2026-11-30T10:01:00Z"),
    Row("a window across midnight", (NIGHTLY,), "2026-12-01T00:05:00Z", 2,
        (("nightly", "2026-11-30T23:50:00Z", "2026-12-01T00:10:00Z"),), ("nightly", "2026-12-01T23:50:00Z"), "2026-12-01T00:10:00Z"),
    Row("no schedules: the spec's floor and nothing to wake up for", (), "2026-11-30T10:00:00Z", 1, (), None, None),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_prewarm_at(row: Row) -> None:
    state = prewarm_at(Scaling(min_replicas=row.min_replicas, schedules=row.schedules), t(row.now))
    assert state.min_replicas == row.floor
    assert tuple((w.name, w.start, w.end) for w in state.active) == tuple((n, t(s), t(e)) for n, s, e in row.active)
    assert (None if state.next is None else (state.next.name, state.next.warm_from)) == (
        None if row.next is None else (row.next[0], t(row.next[1])))
    assert state.changes_at == (None if row.changes_at is None else t(row.changes_at))


def test_status_shape_names_times_in_utc() -> None:
    state = prewarm_at(Scaling(schedules=(MORNING,)), t("2026-11-30T06:55:00Z"))
    assert state.active[0].as_status() == {"name": "morning", "warmFrom": "2026-11-30T06:50:00Z", "start": "2026-11-30T07:00:00Z",
                                           "end": "2026-11-30T08:00:00Z", "minReplicas": 3}


def test_walking_the_clock_reaches_every_edge_in_order() -> None:
    """Waking at each `changes_at` (as the operator and aifn run do) sees warm-up, then release, of each window."""
    scaling = Scaling(schedules=(MORNING, NOON))
    now, floors = t("2026-11-30T00:00:00Z"), []
    for _ in range(6):
        state = prewarm_at(scaling, now)
        assert state.changes_at is not None and state.changes_at > now
        now = state.changes_at
        floors.append((now.strftime("%H:%M"), prewarm_at(scaling, now).min_replicas))
    assert floors == [("06:50", 3), ("08:00", 0), ("11:25", 2), ("12:00", 0), ("06:50", 3), ("08:00", 0)]
