"""Cron expressions as Knative's PingSource reads them (robfig/cron v3): five fields or a descriptor, in a timezone.

Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or JAN-DEC), day of
week (0-6 or SUN-SAT; 7 is refused, as PingSource refuses it). Each field is `*` (or `?`),
a number, a range `a-b`, a step `*/n` or `a-b/n` or `a/n` (a to the end), or a comma list
of those; names are case-insensitive. Descriptors (lower case only): @yearly, @annually,
@monthly, @weekly, @daily, @midnight, @hourly; `@every` is refused, as PingSource refuses it.
Days follow robfig's rule: a field is unrestricted when one of its items is `*` or `?` with
no step above 1; if either day field is unrestricted a day must match both, otherwise it
matches if either does (so `*/2` counts as restricted). Across DST changes a local time that
does not exist is skipped and one that happens twice fires twice, as robfig does (its slips in
zones that change at midnight or by 30 minutes are not copied: see the test's DEVIATIONS).
Ours, not a library: croniter 7.0.0 and cronsim 2.8 both accept 7 as Sunday and fire a
DST-skipped 02:30 at 03:00, where PingSource refuses and skips (table: tests/unit/test_cron_robfig.py).
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
          ("day of week", 0, 6, DAYS))
SEARCH_YEARS = 5
UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression and the timezone it is read in."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is unrestricted (robfig's star bit)
    any_weekday: bool  # day of week is unrestricted
    tz: tzinfo

    @classmethod
    def parse(cls, expression: str, timezone: str | None = None) -> Cron:
        """Parse `expression`; ValueError names the field (and the timezone) that is wrong."""
        text = expression.strip()
        if text.startswith("@"):
            if text.split()[0] == "@every":
                raise ValueError(f"cron {expression!r}: @every is not supported (PingSource refuses it); use five fields")
            if text not in MACROS:
                raise ValueError(f"cron {expression!r}: unknown descriptor; expected one of {', '.join(MACROS)} (lower case)")
            text = MACROS[text]
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f"cron {expression!r}: expected 5 fields (minute hour day-of-month month day-of-week) or an @macro")
        fields = [_field(part, *spec, expression) for part, spec in zip(parts, FIELDS)]
        try:
            tz: tzinfo = ZoneInfo(timezone) if timezone else UTC
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {timezone!r} is not a known IANA timezone") from None
        (minutes, _), (hours, _), (days, any_day), (months, _), (weekdays, any_weekday) = fields
        return cls(expression, minutes, hours, days, months, weekdays, any_day, any_weekday, tz)

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
        after = moment.astimezone(UTC)
        day = after.astimezone(self.tz).date() - timedelta(days=1)  # a repeated hour can straddle midnight
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for _ in range(366 * SEARCH_YEARS):
            if self.day_matches(day):
                offset = self._steady_offset(day)
                if offset is not None:  # no DST change today: wall-clock order is time order
                    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - offset
                    for hour in hours:
                        if start + timedelta(hours=hour, minutes=59) <= after:
                            continue
                        for minute in minutes:
                            if (at := start + timedelta(hours=hour, minutes=minute)) > after:
                                return at
                else:
                    due = [at for hour in hours for minute in minutes for at in self._instants(day, hour, minute) if at > after]
                    if due:
                        return min(due)  # in a repeated hour, wall-clock order is not time order
            day += timedelta(days=1)
        raise ValueError(f"cron {self.expression!r} never runs within {SEARCH_YEARS} years")

    def _steady_offset(self, day: date) -> timedelta | None:
        """The zone's UTC offset on `day` if it is the same from 00:00 to 23:59 (no gap or repeat), else None."""
        offsets = {datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz, fold=fold).utcoffset()
                   for hour, minute in ((0, 0), (23, 59)) for fold in (0, 1)}
        return offsets.pop() if len(offsets) == 1 else None

    def _instants(self, day: date, hour: int, minute: int) -> list[datetime]:
        """When the local wall time happens, in UTC: none in a DST gap, two in a repeated hour."""
        wall = datetime(day.year, day.month, day.day, hour, minute)
        instants: list[datetime] = []
        for fold in (0, 1):
            at = wall.replace(tzinfo=self.tz, fold=fold).astimezone(UTC)
            if at.astimezone(self.tz).replace(tzinfo=None) == wall and at not in instants:
                instants.append(at)
        return instants


def _field(part: str, name: str, low: int, high: int, names: dict[str, int], expression: str) -> tuple[frozenset[int], bool]:
    """The values `part` selects, and whether it is unrestricted (an item `*` or `?` without a step above 1)."""
    values: set[int] = set()
    star = False
    for item in part.split(","):
        selected, item_star = _item(item, name, low, high, names, expression)
        values |= selected
        star = star or item_star
    return frozenset(values), star


def _item(item: str, name: str, low: int, high: int, names: dict[str, int], expression: str) -> tuple[set[int], bool]:
    def bad(why: str) -> ValueError:
        return ValueError(f"cron {expression!r}: {name} field {item!r}: {why}")

    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise bad("the step after '/' must be a positive number")
        step = int(step_text)
    star = base in ("*", "?")
    if star:
        start, end = low, high
    elif "-" in base:
        a, _, b = base.partition("-")
        start, end = _number(a, names, bad), _number(b, names, bad)
    else:
        start = _number(base, names, bad)
        end = high if slash else start
    for value in (start, end):
        if not low <= value <= high:
            hint = " (Sunday is 0 or SUN; PingSource refuses 7)" if name == "day of week" and value == 7 else ""
            raise bad(f"{value} is outside {low}-{high}{hint}")
    if start > end:
        raise bad(f"range {start}-{end} runs backwards")
    return set(range(start, end + 1, step)), star and step == 1


def _number(text: str, names: dict[str, int], bad) -> int:  # bad: Callable[[str], ValueError]
    if text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise bad(f"{text!r} is not a number" + (f" or one of {', '.join(names)}" if names else ""))
    return int(text)
