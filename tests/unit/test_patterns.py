"""The CRD's patterns matched as Go's RE2 matches them: `$` ends the text, `\\s` is ASCII whitespace."""

from __future__ import annotations

import pytest

from aifunction_operator.spec.patterns import go_matches
from aifunction_operator.spec.schema import CRON_PATTERN, DNS_LABEL_PATTERN, DURATION_PATTERN, MODEL_NAME_PATTERN

CASES = [
    (DNS_LABEL_PATTERN, "digits", True),
    (DNS_LABEL_PATTERN, "digits\n", False),  # Python's re.search with `$` says True
    (MODEL_NAME_PATTERN, "m.v2\n", False),
    (DURATION_PATTERN, "5m\n", False),
    (DURATION_PATTERN, "1h30m", True),
    (CRON_PATTERN, "*/5 * * * *", True),
    (CRON_PATTERN, "*/5\u00a0*\u00a0*\u00a0*\u00a0*", False),  # no-break spaces: Unicode whitespace, not RE2's \s
    (CRON_PATTERN, "@daily\n", False),
    (r"^[a\s]+$", "a \t", True),
    (r"^\$[0-9]$", "$5", True),  # an escaped dollar stays a dollar
    (r"^[$]$", "$", True),  # and so does one in a class
]


@pytest.mark.parametrize(("pattern", "value", "expected"), CASES)
def test_go_semantics(pattern: str, value: str, expected: bool) -> None:
    assert go_matches(pattern, value) is expected
