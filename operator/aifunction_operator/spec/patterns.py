"""The CRD's regular expressions, matched the way the API server matches them (Go's RE2).

Python's `$` also matches before a final newline and its `\\s` is Unicode whitespace, so
`re.search("^[a-z]+$", "x\\n")` is a match where Kubernetes refuses the value. `go_regex`
rewrites a pattern to RE2's meaning: `$` is the end of the text, `\\s` is `[\\t\\n\\f\\r ]`.
"""

from __future__ import annotations

import re
from functools import lru_cache

_RE2_SPACE = r"\t\n\f\r "


@lru_cache(maxsize=None)
def go_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled with RE2's meaning of `$`, `\\s` and `\\S` (outside and inside classes)."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escape = pattern[i:i + 2]
            if escape == r"\s":
                out.append(_RE2_SPACE if in_class else f"[{_RE2_SPACE}]")
            elif escape == r"\S" and not in_class:
                out.append(f"[^{_RE2_SPACE}]")
            else:
                out.append(escape)
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        out.append(char)
        i += 1
    return re.compile("".join(out))


def go_matches(pattern: str, value: str) -> bool:
    """True when RE2 finds `pattern` in `value` (CEL's `matches` and OpenAPI's `pattern`)."""
    return go_regex(pattern).search(value) is not None
