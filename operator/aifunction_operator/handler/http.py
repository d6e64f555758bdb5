"""Framework-neutral HTTP request and response values the runtime works with.

The kserve (FastAPI) server and the `aifn run` (aiohttp) gateway both translate their own
request objects into `HttpRequest` and write `HttpResponse` back, so the runtime's behaviour
is identical in the cluster and on one machine.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

try:  # orjson comes with kserve (the `handler` extra); the standard library is the fallback.
    import orjson
except ImportError:  # pragma: no cover - exercised only without kserve installed
    orjson = None  # type: ignore[assignment]


@dataclass(frozen=True)
class HttpRequest:
    """One request as received; header names are lower-cased."""

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    source_ip: str = ""

    def header(self, name: str, default: str = "") -> str:
        """A header by case-insensitive name."""
        return self.headers.get(name.lower(), default)

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (`application/json`)."""
        return self.header("content-type").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class HttpResponse:
    """What to send back."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


def json_response(status: int, payload: object) -> HttpResponse:
    """A JSON response (numpy arrays and scalars are converted to lists and numbers)."""
    return HttpResponse(status, dumps(payload), {"content-type": "application/json"})


def error_response(status: int, message: str) -> HttpResponse:
    """`{"error": message}` with `status`, the shape every error of ours has."""
    return json_response(status, {"error": message})


def dumps(payload: object) -> bytes:
    """JSON bytes; numpy arrays and scalars serialize natively."""
    if orjson is not None:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY, default=_fallback)
    return json.dumps(payload, default=_fallback, separators=(",", ":")).encode()


def loads(data: bytes | str) -> object:
    """Parse JSON; raises ValueError on malformed input."""
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)


def _fallback(value: object) -> object:
    item = getattr(value, "item", None)  # numpy scalars orjson does not know (float16, ...)
    if callable(item):
        return item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def body_text(body: bytes, content_type: str) -> tuple[str | None, bool]:
    """The body as a Lambda event carries it: UTF-8 text, or base64 with the flag set."""
    if not body:
        return None, False
    if not _is_binary_type(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _is_binary_type(content_type: str) -> bool:
    if not content_type or content_type.startswith("text/"):
        return False
    if content_type.endswith(("json", "xml")) or content_type == "application/x-www-form-urlencoded":
        return False
    return content_type.startswith(("application/", "image/", "audio/", "video/"))
