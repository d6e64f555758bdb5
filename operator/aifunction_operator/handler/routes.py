"""Extra HTTP routes a Lambda-style function declares, as API Gateway route keys.

A function serves `POST /` and `POST /invoke`; it may claim more with a `routes` attribute:
`("POST /v1/embeddings", "GET /v1/models", "GET /v1/models/{model}")`. A `{name}` segment
matches one path segment; the event's `resource` is then the template and `pathParameters`
holds the values, as API Gateway sets them. Both servers (the cluster's and `aifn run`'s)
pass a matching request to the function, with its body as sent (a malformed JSON body is the
function's to answer); the runtime's own paths cannot be claimed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import HandlerLoadError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RESERVED = ("/", "/invoke", "/metrics")
RESERVED_PREFIXES = ("/v2", "/aifn")
SEGMENT_RE = re.compile(r"^(\{[A-Za-z_]\w*\}|[A-Za-z0-9._~:@!$&'()*+,;=-]+)$")


@dataclass(frozen=True)
class Route:
    """One route key: method and path template, with the template as a regular expression."""

    method: str
    template: str
    pattern: re.Pattern[str]

    @property
    def key(self) -> str:
        """`METHOD /path`, as declared."""
        return f"{self.method} {self.template}"


def parse_routes(declared: Any, entrypoint: str) -> tuple[Route, ...]:
    """The routes of a function's `routes` attribute; HandlerLoadError naming a bad one."""
    if declared is None:
        return ()
    if isinstance(declared, str) or not isinstance(declared, Iterable):
        raise HandlerLoadError(f"{entrypoint}.routes must be a list of 'METHOD /path' strings, not {type(declared).__name__}")
    routes = tuple(_parse_route(key, entrypoint) for key in declared)
    keys = [route.key for route in routes]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise HandlerLoadError(f"{entrypoint}.routes declares {', '.join(duplicates)} more than once")
    return routes


def match(routes: tuple[Route, ...], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route serving `method path` and its path parameters, or None."""
    for route in routes:
        if route.method == method:
            found = route.pattern.match(path)
            if found is not None:
                return route, found.groupdict()
    return None


def _parse_route(key: Any, entrypoint: str) -> Route:
    method, _, path = key.partition(" ") if isinstance(key, str) else ("", "", "")
    if method not in METHODS or not path.startswith("/"):
        raise HandlerLoadError(
            f"{entrypoint}.routes: {key!r} is not a route key 'METHOD /path' (METHOD one of {', '.join(METHODS)})"
        )
    if path in RESERVED or any(path == p or path.startswith(p + "/") for p in RESERVED_PREFIXES):
        raise HandlerLoadError(
            f"{entrypoint}.routes: {key!r} is the runtime's own ({', '.join(RESERVED)}, /v2/..., /aifn/...)"
        )
    segments = path[1:].split("/")
    bad = [s for s in segments if not SEGMENT_RE.match(s)]
    if bad:
        raise HandlerLoadError(f"{entrypoint}.routes: {key!r} has a path segment {bad[0]!r} that is not a name or {{param}}")
    regex = "".join("/" + (f"(?P<{s[1:-1]}>[^/]+)" if s.startswith("{") else re.escape(s)) for s in segments)
    try:
        return Route(method, path, re.compile(f"^{regex}$"))
    except re.error:
        raise HandlerLoadError(f"{entrypoint}.routes: {key!r} names a path parameter twice") from None
