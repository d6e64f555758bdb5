"""Cron evaluation and the scheduler on a driven clock (no waiting for real minutes)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from aifunction_operator.spec.cron import Cron
from aifunction_operator.handler.http import HttpRequest, HttpResponse, json_response
from aifunction_operator.local.schedule import PING_TYPE, ManualClock, Scheduler
from aifunction_operator.spec.model import Schedule

UTC = timezone.utc


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "tz", "after", "expected"),
    [
        ("* * * * *", None, at(2026, 3, 1, 10, 0, 30), at(2026, 3, 1, 10, 1)),
        ("*/15 * * * *", None, at(2026, 3, 1, 10, 15), at(2026, 3, 1, 10, 30)),
        ("@hourly", None, at(2026, 3, 1, 10, 59), at(2026, 3, 1, 11, 0)),
        ("@daily", None, at(2026, 12, 31, 23, 0), at(2027, 1, 1, 0, 0)),
        ("@weekly", None, at(2026, 11, 28, 12, 0), at(2026, 11, 29, 0, 0)),  # Sunday
        ("0 9 * * MON-FRI", None, at(2026, 11, 28, 12, 0), at(2026, 11, 30, 9, 0)),  # Saturday -> Monday
        ("0 9 * * 0", None, at(2026, 11, 28, 12, 0), at(2026, 11, 29, 9, 0)),  # 0 is Sunday
        ("30 2 1,15 JAN,JUL *", None, at(2026, 1, 2, 0, 0), at(2026, 1, 15, 2, 30)),
        ("0 0 29 2 *", None, at(2026, 1, 1), at(2028, 2, 29)),
        ("0 12 13 * FRI", None, at(2026, 1, 1), at(2026, 1, 2, 12, 0)),  # both restricted: either matches
        ("0 9 * * *", "Europe/Berlin", at(2026, 7, 1, 12, 0), at(2026, 7, 2, 7, 0)),  # CEST = UTC+2
        ("0 9 * * *", "America/New_York", at(2026, 1, 1, 0, 0), at(2026, 1, 1, 14, 0)),  # EST = UTC-5
        ("10-20/5 3 * * *", None, at(2026, 1, 1, 3, 15), at(2026, 1, 1, 3, 20)),
    ],
)
def test_next_after(expression: str, tz: str | None, after: datetime, expected: datetime) -> None:
    assert Cron.parse(expression, tz).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "tz", "message"),
    [
        ("* * * *", None, "expected 5 fields"),
        ("60 * * * *", None, "minute field '60': 60 is outside 0-59"),
        ("* 24 * * *", None, "hour field '24'"),
        ("* * 0 * *", None, "day of month field '0'"),
        ("* * * 13 *", None, "month field '13'"),
        ("* * * * MOON", None, "day of week field 'MOON'"),
        ("0 9 * * 7", None, "day of week field '7': 7 is outside 0-6"),  # PingSource (robfig/cron) refuses 7
        ("*/0 * * * *", None, "step after '/' must be a positive number"),
        ("9-3 * * * *", None, "runs backwards"),
        ("* * * * *", "Nowhere/City", "timezone 'Nowhere/City'"),
        ("0 0 31 2 *", None, "never runs"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, tz: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("*", r"\*")):
        Cron.parse(expression, tz).next_after(at(2026, 1, 1))


async def settle(clock: ManualClock, sleepers: int) -> None:
    """Let the scheduler tasks run until `sleepers` of them wait on the clock."""
    for _ in range(200):
        if clock.sleepers >= sleepers:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {clock.sleepers} sleepers")


def test_scheduler_fires_on_the_driven_clock_like_a_pingsource() -> None:
    async def scenario() -> tuple[list[HttpRequest], Scheduler]:
        received: list[HttpRequest] = []

        async def deliver(request: HttpRequest) -> HttpResponse:
            received.append(request)
            return json_response(200, {})

        clock = ManualClock(at(2026, 5, 1, 8, 59, 30))
        scheduler = Scheduler(
            "digits",
            [Schedule("minutely", "* * * * *", data='{"pixels": []}'),
             Schedule("hourly", "@hourly", content_type="text/plain", data="tick")],
            deliver, clock=clock, namespace="ml",
        )
        task = asyncio.create_task(scheduler.run())
        await settle(clock, 2)
        assert received == []  # nothing before the first minute
        clock.advance(30)  # 09:00:00: both are due
        await settle(clock, 2)
        clock.advance(60)  # 09:01: only the minutely one
        await settle(clock, 2)
        clock.advance(59)  # 09:01:59: nothing
        await settle(clock, 2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return received, scheduler

    received, scheduler = asyncio.run(scenario())
    fired = [(f.schedule, f.scheduled_for, f.status) for f in scheduler.firings]
    assert sorted(fired) == sorted([
        ("minutely", at(2026, 5, 1, 9, 0), 200),
        ("hourly", at(2026, 5, 1, 9, 0), 200),
        ("minutely", at(2026, 5, 1, 9, 1), 200),
    ])
    ping = next(r for r in received if r.headers["content-type"] == "text/plain")
    assert ping.body == b"tick" and ping.headers["ce-type"] == PING_TYPE
    assert ping.headers["ce-source"] == "/apis/v1/namespaces/ml/pingsources/digits-hourly"
    assert ping.headers["ce-time"] == "2026-05-01T09:00:00Z" and ping.headers["ce-specversion"] == "1.0"
    assert len({r.headers["ce-id"] for r in received}) == 3


def test_a_failing_delivery_does_not_stop_the_schedule() -> None:
    async def scenario() -> Scheduler:
        calls = {"n": 0}

        async def deliver(request: HttpRequest) -> HttpResponse:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("function down")
            return json_response(500, {"error": "boom"})

        clock = ManualClock(at(2026, 5, 1, 9, 0, 10))
        scheduler = Scheduler("f", [Schedule("m", "* * * * *")], deliver, clock=clock)
        task = asyncio.create_task(scheduler.run())
        for _ in range(3):
            await settle(clock, 1)
            clock.advance(60)
        await settle(clock, 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return scheduler

    scheduler = asyncio.run(scenario())
    assert [f.status for f in scheduler.firings] == [0, 500, 500]


def test_a_bad_schedule_is_rejected_when_the_scheduler_is_built() -> None:
    async def deliver(request: HttpRequest) -> HttpResponse:
        return json_response(200, {})

    with pytest.raises(ValueError, match="hour field"):
        Scheduler("f", [Schedule("bad", "0 25 * * *")], deliver)
