"""handler/cron.py against robfig/cron v3.0.1, the cron library Knative's PingSource runs.

In ROBFIG the fourth column is robfig's own answer, as tests/unit/cron_robfig gets it with PingSource's
settings (pkg/adapter/mtping: parser SecondOptional|Minute|Hour|Dom|Month|Dow|Descriptor, the timezone
as a `CRON_TZ=<zone> ` prefix; pkg/apis/sources/v1/ping_validation.go: `@every` refused). It lists the
next fire times in UTC after `start`, or `ERR` where PingSource refuses the schedule, or `NEVER` where
robfig gives up (5 years). cron.py must give the same answer. DEVIATIONS lists where it does not, on
purpose: in zones whose DST change falls at local midnight or is not a whole hour, robfig's Next fires on a
day that does not match, skips matching times, or repeats one time; cron.py keeps the rule (each matching
local time fires once for each time it occurs). And cron.py refuses syntax that robfig takes but the CRD's
pattern does not admit, or that robfig only takes by accident.
test_robfig_says_so rebuilds both robfig columns with Go (skipped without it). The first run fetches
github.com/robfig/cron/v3 through the Go module proxy.

The same ROBFIG table through the maintained Python parsers (why cron.py is not a thin adapter over them).
croniter 7.0.0 gets 5 rows wrong: it accepts `0 9 * * 7`, `0 0 * * 5-7` and `@DAILY`, reads
`0 0 */1 * MON` as "the 1st-31st OR Monday", and fires the DST-skipped `30 2 * * *` at 03:00 on Mar 8.
cronsim 2.8 gets 16 wrong: it has no @descriptors and no `?`, reads `*/2` and `13,*` the Vixie way,
fires the fall-back 01:30 and 02:00 only once, and has croniter's 7 and spring-forward errors.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aifunction_operator.spec.cron import Cron

REFERENCE = Path(__file__).parent / "cron_robfig"

# (cron, timezone, start, robfig: next fire times in UTC | ERR | NEVER, what the case shows)
ROBFIG = [
    ("* * * * *", "", "2026-03-01T10:00:30Z", "2026-03-01T10:01:00Z 2026-03-01T10:02:00Z", "every minute; strictly after, seconds dropped"),
    ("*/15 * * * *", "", "2026-03-01T10:15:00Z", "2026-03-01T10:30:00Z 2026-03-01T10:45:00Z", "step from *"),
    ("5/20 * * * *", "", "2026-03-01T10:00:00Z", "2026-03-01T10:05:00Z 2026-03-01T10:25:00Z 2026-03-01T10:45:00Z", "N/step means N-max/step"),
    ("10-20/5 3 * * *", "", "2026-01-01T03:15:00Z", "2026-01-01T03:20:00Z 2026-01-02T03:10:00Z", "range with step"),
    ("@yearly", "", "2026-05-05T00:00:00Z", "2027-01-01T00:00:00Z 2028-01-01T00:00:00Z", "descriptor"),
    ("@annually", "", "2026-05-05T00:00:00Z", "2027-01-01T00:00:00Z", "descriptor"),
    ("@monthly", "", "2026-05-05T00:00:00Z", "2026-06-01T00:00:00Z 2026-07-01T00:00:00Z", "descriptor"),
    ("@weekly", "", "2026-11-28T12:00:00Z", "2026-11-29T00:00:00Z 2026-12-06T00:00:00Z", "descriptor: Sunday 00:00"),
    ("@daily", "", "2026-12-31T23:00:00Z", "2027-01-01T00:00:00Z", "descriptor"),
    ("@midnight", "", "2026-12-31T23:00:00Z", "2027-01-01T00:00:00Z", "descriptor"),
    ("@hourly", "", "2026-03-01T10:59:00Z", "2026-03-01T11:00:00Z 2026-03-01T12:00:00Z", "descriptor"),
    ("@every 1h", "", "2026-03-01T10:00:00Z", "ERR", "@every: robfig parses it, PingSource's validation refuses it"),
    ("@DAILY", "", "2026-03-01T10:00:00Z", "ERR", "descriptors are case-sensitive"),
    ("0 9 * * MON-FRI", "", "2026-11-28T12:00:00Z", "2026-11-30T09:00:00Z 2026-12-01T09:00:00Z", "weekday names, Saturday -> Monday"),
    ("0 9 * * mon-fri", "", "2026-11-28T12:00:00Z", "2026-11-30T09:00:00Z", "names are case-insensitive"),
    ("30 2 1,15 jan,Jul *", "", "2026-01-02T00:00:00Z", "2026-01-15T02:30:00Z 2026-07-01T02:30:00Z 2026-07-15T02:30:00Z", "month names, lists"),
    ("0 0 * JAN-DEC/3 *", "", "2026-02-01T00:00:00Z", "2026-04-01T00:00:00Z 2026-04-02T00:00:00Z", "step over a named range"),
    ("0 9 * * 0", "", "2026-11-28T12:00:00Z", "2026-11-29T09:00:00Z", "0 is Sunday"),
    ("0 9 * * 7", "", "2026-11-28T12:00:00Z", "ERR", "7 is not Sunday: out of range"),
    ("0 0 * * 5-7", "", "2026-11-28T12:00:00Z", "ERR", "a range ending at 7: out of range"),
    ("0 12 13 * FRI", "", "2026-01-01T00:00:00Z", "2026-01-02T12:00:00Z 2026-01-09T12:00:00Z 2026-01-13T12:00:00Z", "both restricted: either matches (OR)"),
    ("0 0 13 * *", "", "2026-01-01T00:00:00Z", "2026-01-13T00:00:00Z 2026-02-13T00:00:00Z", "only day of month"),
    ("0 0 * * FRI", "", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z 2026-01-09T00:00:00Z", "only day of week"),
    ("0 0 ? * MON", "", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z 2026-01-12T00:00:00Z", "? is * (unrestricted): Mondays only"),
    ("0 0 */1 * MON", "", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z 2026-01-12T00:00:00Z", "*/1 stays unrestricted: Mondays only"),
    ("0 0 */2 * MON", "", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z 2026-01-05T00:00:00Z 2026-01-07T00:00:00Z 2026-01-09T00:00:00Z", "*/2 is restricted: odd days OR Mondays"),
    ("0 0 1 * */2", "", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z 2026-01-04T00:00:00Z 2026-01-06T00:00:00Z 2026-01-08T00:00:00Z", "*/2 day of week is restricted: the 1st OR Sun/Tue/Thu/Sat"),
    ("0 0 1-31 * MON", "", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z 2026-01-03T00:00:00Z", "1-31 is restricted: every day (OR)"),
    ("0 0 13,* * FRI", "", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z 2026-01-09T00:00:00Z", "a * anywhere in the list is unrestricted: Fridays only"),
    ("0 0 29 2 *", "", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z", "leap day"),
    ("0 0 31 * *", "", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z 2026-05-31T00:00:00Z", "months without a 31st are skipped"),
    ("0 0 30 2 *", "", "2026-01-01T00:00:00Z", "NEVER", "never"),
    ("0 9 * * *", "Europe/Berlin", "2026-07-01T12:00:00Z", "2026-07-02T07:00:00Z", "timezone (CEST, UTC+2)"),
    ("0 9 * * *", "America/New_York", "2026-01-01T00:00:00Z", "2026-01-01T14:00:00Z", "timezone (EST, UTC-5)"),
    ("0 0 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01T18:30:00Z", "half-hour offset"),
    ("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-09T06:30:00Z 2026-03-10T06:30:00Z 2026-03-11T06:30:00Z", "spring forward: 02:30 does not exist on Mar 8, skipped"),
    ("0 * * * *", "America/New_York", "2026-03-08T05:30:00Z", "2026-03-08T06:00:00Z 2026-03-08T07:00:00Z 2026-03-08T08:00:00Z", "spring forward, hourly"),
    ("*/30 * * * *", "America/New_York", "2026-03-08T06:40:00Z", "2026-03-08T07:00:00Z 2026-03-08T07:30:00Z", "spring forward, half-hourly"),
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-01T05:30:00Z 2026-11-01T06:30:00Z 2026-11-02T06:30:00Z", "fall back: 01:30 happens twice on Nov 1, fires twice"),
    ("0 * * * *", "America/New_York", "2026-11-01T04:30:00Z", "2026-11-01T05:00:00Z 2026-11-01T06:00:00Z 2026-11-01T07:00:00Z 2026-11-01T08:00:00Z", "fall back, hourly: 01:00 EDT and 01:00 EST"),
    ("*/30 * * * *", "America/New_York", "2026-11-01T05:10:00Z", "2026-11-01T05:30:00Z 2026-11-01T06:00:00Z 2026-11-01T06:30:00Z 2026-11-01T07:00:00Z", "fall back, from inside the first 01:xx"),
    ("*/30 * * * *", "America/New_York", "2026-11-01T06:10:00Z", "2026-11-01T06:30:00Z 2026-11-01T07:00:00Z", "fall back, from inside the repeated 01:xx"),
    ("0 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T00:00:00Z 2026-10-25T01:00:00Z", "fall back in Berlin: 02:00 happens twice on Oct 25"),
    ("0 9 * * *", "Nowhere/City", "2026-01-01T00:00:00Z", "ERR", "unknown timezone"),
    ("0 0 1 1 *", "", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "strictly after an exact fire time"),
]

# (cron, timezone, start, robfig, cron.py, why they differ)
DEVIATIONS = [
    ("0 6 * * SUN", "Asia/Beirut", "2026-03-28T12:00:00Z", "2026-04-05T03:00:00Z 2026-04-12T03:00:00Z",
     "2026-03-29T03:00:00Z 2026-04-05T03:00:00Z", "DST starts at midnight: robfig skips Sunday Mar 29"),
    ("0 13 4 * *", "America/Santiago", "2027-09-05T01:00:00Z", "2027-09-05T16:00:00Z 2027-10-04T16:00:00Z",
     "2027-10-04T16:00:00Z 2027-11-04T16:00:00Z", "DST starts at midnight: robfig fires on Sep 5 for day 4"),
    ("0 6 7 * *", "America/Havana", "2026-03-07T12:00:00Z", "2026-03-08T10:00:00Z 2026-04-07T10:00:00Z",
     "2026-04-07T10:00:00Z 2026-05-07T10:00:00Z", "DST starts at midnight: robfig fires on Mar 8 for day 7"),
    ("*/15 11 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z", "2026-10-04T00:30:00Z 2026-10-04T00:45:00Z 2026-10-05T00:00:00Z",
     "2026-10-04T00:00:00Z 2026-10-04T00:15:00Z 2026-10-04T00:30:00Z", "30-minute DST change: robfig skips 11:00 and 11:15 on Oct 4"),
    ("@daily", "Australia/Lord_Howe", "2026-04-03T20:10:00Z", "2026-04-04T13:00:00Z 2026-04-06T13:30:00Z 2026-04-07T13:30:00Z",
     "2026-04-04T13:00:00Z 2026-04-05T13:30:00Z 2026-04-06T13:30:00Z", "30-minute DST change: robfig skips midnight of Apr 6"),
    ("46 3 * * *", "Pacific/Chatham", "2028-04-01T12:51:00Z", "2028-04-01T14:01:00Z 2028-04-01T14:01:00Z 2028-04-01T14:01:00Z",
     "2028-04-01T15:01:00Z 2028-04-02T15:01:00Z 2028-04-03T15:01:00Z", "DST ends at 03:45: robfig answers 02:46, and again"),
    ("0 0 9 * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T09:00:00Z", "ERR", "a seconds field: PingSource takes six fields, the CRD's pattern five"),
    ("CRON_TZ=Europe/Berlin 0 9 * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T08:00:00Z", "ERR", "a zone prefix: the zone is spec.timezone"),
    ("*-5 * * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "ERR", "robfig reads *-5 as *"),
    ("1,,2 * * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "ERR", "robfig drops the empty item"),
    ("+5 * * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", "ERR", "robfig's Atoi takes a sign"),
]

# Zones whose DST changes are whole hours away from local midnight (robfig is right there).
STEADY_ZONES = ["UTC", "America/New_York", "America/Los_Angeles", "Europe/Berlin", "Europe/London", "Europe/Dublin",
                "Australia/Sydney", "Pacific/Auckland", "Africa/Casablanca", "America/Sao_Paulo", "Asia/Kolkata", "Asia/Tokyo"]


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _count(answer: str) -> int:
    return 1 if answer in ("ERR", "NEVER") else len(answer.split())


def ours(cron: str, tz: str, start: str, count: int) -> str:
    """cron.py's answer in the table's terms."""
    try:
        schedule = Cron.parse(cron, tz or None)
    except ValueError:
        return "ERR"
    moment, times = _utc(start), []
    for _ in range(count):
        try:
            moment = schedule.next_after(moment)
        except ValueError as exc:
            assert "never runs" in str(exc)
            times.append("NEVER")
            break
        times.append(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return " ".join(times)


@pytest.mark.parametrize(("cron", "tz", "start", "robfig", "why"), ROBFIG, ids=[f"{c}|{t}|{s}" for c, t, s, _, _ in ROBFIG])
def test_matches_robfig(cron: str, tz: str, start: str, robfig: str, why: str) -> None:
    assert ours(cron, tz, start, _count(robfig)) == robfig, why


@pytest.mark.parametrize(("cron", "tz", "start", "robfig", "expected", "why"), DEVIATIONS, ids=[f"{c}|{t}" for c, t, *_ in DEVIATIONS])
def test_deviations(cron: str, tz: str, start: str, robfig: str, expected: str, why: str) -> None:
    assert robfig != expected
    assert ours(cron, tz, start, _count(expected)) == expected, why


def test_next_is_strictly_after_the_moment_inside_a_repeated_hour() -> None:
    schedule = Cron.parse("*/15 * * * *", "America/New_York")
    moment = _utc("2026-11-01T05:00:00Z")  # 01:00 EDT; 01:00-01:59 happens again in EST
    seen = []
    for _ in range(12):
        later = schedule.next_after(moment)
        assert later > moment
        seen.append(later)
        moment = later
    assert [t - seen[0] for t in seen] == [timedelta(minutes=15 * i) for i in range(12)]  # no gap, no repeat


def test_refusals_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"day of week field '7': 7 is outside 0-6 \(Sunday is 0 or SUN"):
        Cron.parse("0 9 * * 7")
    with pytest.raises(ValueError, match="@every is not supported"):
        Cron.parse("@every 1h")
    with pytest.raises(ValueError, match="unknown descriptor"):
        Cron.parse("@DAILY")
    with pytest.raises(ValueError, match=r"minute field '\*/': the step after '/' must be a positive number"):
        Cron.parse("*/ * * * *")


def _robfig(rows: list[tuple[str, str, str, int]], tmp_path: Path) -> list[str]:
    """Ask robfig/cron itself (tests/unit/cron_robfig); skip when Go or the module cannot be had."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("needs Go to run robfig/cron")
    binary = tmp_path / "cronrobfig"
    build = subprocess.run([go, "build", "-o", str(binary), "."], cwd=REFERENCE, capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        pytest.skip(f"cannot build the robfig/cron reference (offline?): {build.stderr.strip()[-300:]}")
    lines = "".join(f"{cron}\t{start}\t{count}\t{tz}\n" for cron, tz, start, count in rows)
    run = subprocess.run([str(binary)], input=lines, capture_output=True, text=True, timeout=120, env={**os.environ, "TZ": "UTC"}, check=True)
    return ["ERR" if line.startswith("ERR") else line for line in run.stdout.splitlines()]


@pytest.mark.slow
def test_robfig_says_so(tmp_path: Path) -> None:
    """Both robfig columns are robfig's answers."""
    rows = [(c, t, s, r) for c, t, s, r, _ in ROBFIG] + [(c, t, s, r) for c, t, s, r, _, _ in DEVIATIONS]
    answers = _robfig([(c, t, s, _count(r)) for c, t, s, r in rows], tmp_path)
    assert [(c, t, s, a) for (c, t, s, _), a in zip(rows, answers)] == rows


def _random_cron(rnd: random.Random) -> str:
    months, days = "jan feb mar apr may jun jul aug sep oct nov dec".split(), "sun mon tue wed thu fri sat".split()

    def item(low: int, high: int, names: list[str] | None) -> str:
        def num(value: int) -> str:
            return names[value - low] if names and rnd.random() < 0.3 else str(value)
        kind = rnd.random()
        a, b = sorted((rnd.randint(low, high), rnd.randint(low, high)))
        if kind < 0.25:
            return rnd.choice(["*", "?"])
        if kind < 0.4:
            return f"*/{rnd.randint(1, 4 if high < 13 else 20)}"
        if kind < 0.65:
            return num(a)
        if kind < 0.8:
            return f"{num(a)}-{num(b)}"
        if kind < 0.9:
            return f"{num(a)}-{num(b)}/{rnd.randint(1, 5)}"
        return f"{num(a)}/{rnd.randint(1, 10)}"

    def field(low: int, high: int, star: float, names: list[str] | None = None) -> str:
        if rnd.random() < star:
            return "*"
        return ",".join(item(low, high, names) for _ in range(rnd.choice([1, 1, 1, 2, 3])))

    if rnd.random() < 0.05:
        return rnd.choice(["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"])
    return " ".join([field(0, 59, 0.2), field(0, 23, 0.3), field(1, 31, 0.4), field(1, 12, 0.6, months), field(0, 6, 0.4, days)])


@pytest.mark.slow
def test_random_schedules_match_robfig(tmp_path: Path) -> None:
    """2000 random schedules, half of them started within a day before a DST change, against robfig."""
    rnd = random.Random(15)
    rows = []
    for _ in range(2000):
        zone = rnd.choice(STEADY_ZONES)
        start = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=rnd.randint(0, 2 * 525600), seconds=rnd.choice([0, 0, 17]))
        if rnd.random() < 0.5:
            start = _before_next_change(start, zone, rnd)
        rows.append((_random_cron(rnd), zone, start.strftime("%Y-%m-%dT%H:%M:%SZ"), 5))
    answers = _robfig(rows, tmp_path)
    mismatches = [(c, t, s, a, o) for (c, t, s, n), a in zip(rows, answers) if (o := ours(c, t, s, n)) != a]
    assert mismatches == []


def _before_next_change(start: datetime, zone: str, rnd: random.Random) -> datetime:
    """A moment up to a day before the zone's next UTC-offset change after `start` (or `start`)."""
    tz, moment = ZoneInfo(zone), start
    offset = start.astimezone(tz).utcoffset()
    for _ in range(400):
        moment += timedelta(days=1)
        if moment.astimezone(tz).utcoffset() != offset:
            return moment - timedelta(hours=rnd.randint(0, 30), minutes=rnd.randint(0, 59))
    return start
