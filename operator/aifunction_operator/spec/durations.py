"""Go-style durations in whole seconds (`90s`, `5m`, `1h30m`), as Knative annotations take them."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")


def parse_duration(text: str) -> int | None:
    """Seconds in `text`, or None when it is not a duration of that form."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        return None
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_seconds(seconds: int) -> str:
    """The Knative annotation form: whole seconds, e.g. `90s`."""
    return f"{seconds}s"
