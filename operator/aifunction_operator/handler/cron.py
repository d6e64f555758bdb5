"""Cron expressions as Knative's PingSource reads them: five fields or an @macro, in a timezone.

Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or JAN-DEC), day of
week (0-6 or SUN-SAT, 7 is Sunday too). Each field is `*`, a number, a range `a-b`, a
step `*/n` or `a-b/n` or `a/n`, or a comma list of those. As in classic cron (and the
robfig/cron parser PingSource uses), when both day of month and day of week are restricted
a day matches if either does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = {name: i + 1 for i, name in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
DAYS = {name: i for i, name in enumerate("SUN MON TUE WED THU FRI SAT".split())}
FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, MONTHS),
          ("day of week", 0, 7, DAYS))
SEARCH_YEARS = 5


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression and the timezone it is read in."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is `*`
    any_weekday: bool  # day of week is `*`
    tz: tzinfo

    @classmethod
    def parse(cls, expression: str, timezone: str | None = None) -> Cron:
        """Parse `expression`; ValueError names the field (and the timezone) that is wrong."""
        text = MACROS.get(expression.strip().lower(), expression.strip())
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f"cron {expression!r}: expected 5 fields (minute hour day-of-month month day-of-week) or an @macro")
        sets = [_field(part, *spec, expression) for part, spec in zip(parts, FIELDS)]
        weekdays = frozenset(d % 7 for d in sets[4])
        try:
            tz: tzinfo = ZoneInfo(timezone) if timezone else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {timezone!r} is not a known IANA timezone") from None
        return cls(expression, sets[0], sets[1], sets[2], sets[3], weekdays,
                   parts[2].startswith("*"), parts[4].startswith("*"), tz)

    def day_matches(self, day: date) -> bool:
        """Whether the schedule runs on `day` at all."""
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, moment: datetime) -> datetime:
        """The first scheduled minute strictly after `moment` (aware), returned in UTC."""
        local = moment.astimezone(self.tz)
        day = local.date()
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for _ in range(366 * SEARCH_YEARS):
            if self.day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz)
                        if candidate > local:
                            return candidate.astimezone(ZoneInfo("UTC"))
            day += timedelta(days=1)
        raise ValueError(f"cron {self.expression!r} never runs within {SEARCH_YEARS} years")


def _field(part: str, name: str, low: int, high: int, names: dict[str, int], expression: str) -> frozenset[int]:
    values: set[int] = set()
    for item in part.split(","):
        values |= _item(item, name, low, high, names, expression)
    return frozenset(values)


def _item(item: str, name: str, low: int, high: int, names: dict[str, int], expression: str) -> set[int]:
    def bad(why: str) -> ValueError:
        return ValueError(f"cron {expression!r}: {name} field {item!r}: {why}")

    base, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise bad("the step after '/' must be a positive number")
        step = int(step_text)
    if base in ("*", "?"):
        start, end = low, high
    elif "-" in base:
        a, _, b = base.partition("-")
        start, end = _number(a, names, bad), _number(b, names, bad)
    else:
        start = _number(base, names, bad)
        end = high if step_text else start
    for value in (start, end):
        if not low <= value <= high:
            raise bad(f"{value} is outside {low}-{high}")
    if start > end:
        raise bad(f"range {start}-{end} runs backwards")
    return set(range(start, end + 1, step))


def _number(text: str, names: dict[str, int], bad) -> int:  # bad: Callable[[str], ValueError]
    if text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise bad(f"{text!r} is not a number" + (f" or one of {', '.join(names)}" if names else ""))
    return int(text)
