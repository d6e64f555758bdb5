"""The test suite's RBAC-denial detector: real denials match, timestamps and durations do not."""

from __future__ import annotations

import pytest

from support.logs import rbac_denials

LINES = [
    ("2026-11-28 23:34:17,403 INFO kopf._core.engines.activities: Initial authentication has finished.", False),
    ('{"time": "2026-11-28T23:34:17.403Z", "level": "INFO", "message": "Ready=True"}', False),
    ("reconciled in 1403 ms", False),
    ("APIForbiddenError: ('aifunctions.aifn.dev is forbidden: User cannot list resource', ...)", True),
    ("aiohttp.client_exceptions.ClientResponseError: 403, message='Forbidden'", True),
    ("kubernetes.client.exceptions.ApiException: (403)", True),
    ('{"level": "ERROR", "status": 403}', True),
    ("Not enough permissions to watch for resources: changes (creation/deletion/updates) will not be noticed", True),
]


@pytest.mark.parametrize(("line", "denied"), LINES)
def test_rbac_denials(line: str, denied: bool) -> None:
    assert bool(rbac_denials(f"first line\n{line}\nlast line")) is denied
