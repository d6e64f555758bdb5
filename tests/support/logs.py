"""Reading operator logs in tests."""

from __future__ import annotations

import re

# What an RBAC denial looks like in the operator's log: kopf's "Not enough permissions",
# the apiserver's "forbidden", or a 403 status. A bare "403" is not enough: the milliseconds
# of a log timestamp (",403") matched it about once in a few hundred runs.
DENIED = re.compile(r"orbidden|Not enough permissions|(?<![\d,.:])403(?!\d)")


def rbac_denials(log_text: str) -> list[str]:
    """The lines of `log_text` that report an RBAC denial."""
    return [line for line in log_text.splitlines() if DENIED.search(line)]
