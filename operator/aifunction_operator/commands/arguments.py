"""Argument types the subcommands share."""

from __future__ import annotations

import argparse

from ..spec.durations import parse_duration


def duration(text: str) -> float:
    """`90s`, `5m`, `1h30m` or a plain number of seconds (not negative), in seconds."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value < 0 or value != value:
            raise argparse.ArgumentTypeError(f"must be a duration of at least 0, got {text!r}")
        return value
    seconds = parse_duration(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 30s, 5m, 1h30m, 2.5)")
    return float(seconds)
