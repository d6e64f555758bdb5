"""Fire a function's schedules the way Knative's PingSource does, on a clock you can drive.

`Scheduler` waits, per schedule, for the next cron minute on its `Clock` and then delivers a
binary-mode CloudEvent like PingSource's (type `dev.knative.sources.ping`, source
`/apis/v1/namespaces/<ns>/pingsources/<function>-<schedule>`, the schedule's data and
content type) to `deliver`. `SystemClock` is wall time; `ManualClock` moves only when a
test calls `advance()`, so a schedule "fires every minute" without waiting a minute.
Missed minutes are not caught up (PingSource does not either): after a jump the next
firing is the first scheduled minute after the clock's new time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from ..spec.model import Schedule
from ..spec.cron import Cron
from ..handler.http import HttpRequest, HttpResponse

log = logging.getLogger("aifn.schedule")

PING_TYPE = "dev.knative.sources.ping"


class Clock(Protocol):
    """Time as the scheduler sees it (aware datetimes)."""

    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep_until(self, when: datetime) -> None:
        while (delay := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(delay, 60.0))


class ManualClock:
    """A clock that stands still until `advance()`; sleepers whose time has come wake up then."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._order), future))
        await future

    def advance(self, by: float | timedelta) -> None:
        """Move time forward by `by` (seconds or a timedelta) and wake every sleeper now due."""
        self._now += by if isinstance(by, timedelta) else timedelta(seconds=by)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleepers are waiting (a test waits for this before advancing)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())


@dataclass(frozen=True)
class Firing:
    """One delivered ping: which schedule, for which minute, and the function's answer."""

    schedule: str
    scheduled_for: datetime
    status: int
    event_id: str


Deliver = Callable[[HttpRequest], Awaitable[HttpResponse]]


class Scheduler:
    """Runs every schedule of one function until cancelled."""

    def __init__(
        self,
        function_name: str,
        schedules: Sequence[Schedule],
        deliver: Deliver,
        *,
        clock: Clock | None = None,
        namespace: str = "local",
    ) -> None:
        self.function_name = function_name
        self.namespace = namespace
        self.deliver = deliver
        self.clock = clock or SystemClock()
        self.crons = {s.name: Cron.parse(s.cron, s.timezone) for s in schedules}  # ValueError names the bad one
        self.schedules = list(schedules)
        self.firings: list[Firing] = []

    def source(self, schedule: Schedule) -> str:
        """The CloudEvent source PingSource would set."""
        return f"/apis/v1/namespaces/{self.namespace}/pingsources/{self.function_name}-{schedule.name}"

    async def run(self) -> None:
        """Fire every schedule at its minutes, forever (cancel the task to stop)."""
        await asyncio.gather(*(self._run_one(s) for s in self.schedules))

    async def _run_one(self, schedule: Schedule) -> None:
        cron = self.crons[schedule.name]
        while True:
            due = cron.next_after(self.clock.now())
            await self.clock.sleep_until(due)
            await self.fire(schedule, due)

    async def fire(self, schedule: Schedule, scheduled_for: datetime) -> Firing:
        """Deliver one ping for `schedule` now (what the loop does when its minute comes)."""
        event_id = str(uuid.uuid4())
        headers = {
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-type": PING_TYPE,
            "ce-source": self.source(schedule),
            "ce-time": scheduled_for.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "content-type": schedule.content_type,
        }
        body = (schedule.data or "").encode()
        try:
            response = await self.deliver(HttpRequest("POST", "/", headers, {}, body, "127.0.0.1"))
            status = response.status
        except Exception:  # a broken delivery must not stop the schedule
            log.exception("schedule %s of %s: delivery failed", schedule.name, self.function_name)
            status = 0
        if status >= 300 or status == 0:
            log.warning("schedule %s of %s: the function answered %s", schedule.name, self.function_name, status)
        firing = Firing(schedule.name, scheduled_for, status, event_id)
        self.firings.append(firing)
        return firing
