"""Scheduled pre-warm (spec.scaling.schedules): which windows hold replicas warm at a given time (pure).

Each schedule's cron expression (read as PingSource reads it, spec/cron.py) says when a window
starts; it lasts `duration` and its replicas are requested `lead_time` earlier, to cover the cold
start. At any moment the function's floor is the higher of spec.scaling.minReplicas and every
window that is warming or open. The operator writes that floor on its routed Revisions and
`aifn run` gives it to its autoscaler; both wake up at `Prewarm.changes_at`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from .cron import Cron
from .model import PrewarmSchedule, Scaling


@dataclass(frozen=True)
class Window:
    """One occurrence of a schedule: replicas are requested from `warm_from`, the window is [start, end)."""

    name: str
    warm_from: datetime
    start: datetime
    end: datetime
    min_replicas: int

    def as_status(self) -> dict[str, object]:
        """The window as status.prewarm shows it (RFC 3339 UTC times)."""
        return {"name": self.name, "warmFrom": _rfc3339(self.warm_from), "start": _rfc3339(self.start),
                "end": _rfc3339(self.end), "minReplicas": self.min_replicas}


@dataclass(frozen=True)
class Prewarm:
    """The pre-warm state of a function at one moment."""

    min_replicas: int  # the floor now: spec.scaling.minReplicas or the highest warming/open window
    active: tuple[Window, ...] = ()  # windows warming or open now, by start
    next: Window | None = None  # the next window to warm up, if any

    @property
    def changes_at(self) -> datetime | None:
        """When the floor may change next: an active window's end or the next window's warm-up."""
        moments = [w.end for w in self.active] + ([self.next.warm_from] if self.next else [])
        return min(moments) if moments else None


def prewarm_at(scaling: Scaling, now: datetime) -> Prewarm:
    """The floor and windows at `now` (aware). Schedules are assumed valid (parse_function checked them)."""
    active: list[Window] = []
    upcoming: list[Window] = []
    for schedule in scaling.schedules:
        cron = Cron.parse(schedule.cron, schedule.timezone)
        window = _window(schedule, cron.next_after(now - timedelta(seconds=schedule.duration)))
        current: Window | None = None
        while window.warm_from <= now:  # warming or open; overlapping occurrences merge into one window
            current = window if current is None else replace(current, end=window.end)
            window = _window(schedule, cron.next_after(window.start))
        if current is not None:
            active.append(current)
        upcoming.append(window)
    floor = max([scaling.min_replicas, *(w.min_replicas for w in active)])
    active.sort(key=lambda w: (w.start, w.name))
    return Prewarm(floor, tuple(active), min(upcoming, key=lambda w: (w.warm_from, w.name)) if upcoming else None)


def _window(schedule: PrewarmSchedule, start: datetime) -> Window:
    return Window(schedule.name, start - timedelta(seconds=schedule.lead_time), start,
                  start + timedelta(seconds=schedule.duration), schedule.min_replicas)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
