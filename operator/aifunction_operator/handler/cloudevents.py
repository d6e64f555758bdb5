"""CloudEvents over HTTP (binary and structured content modes), as Knative Eventing delivers them.

Binary mode: the attributes are `ce-*` headers and the body is the data, its media type in
Content-Type. Structured mode: Content-Type `application/cloudevents+json` and the body is a
JSON object carrying the attributes and `data` (or `data_base64`). Either way the result is
a `CloudEventData`: the attributes, and the data as text or base64, ready to become a
Lambda event's `body`.
Ours, not the `cloudevents` SDK (1.13.0, installed with kserve): its from_http adds a `time` the
sender did not send, leaves ce-* values percent-encoded, reads a request missing ce-id as structured
and blames specversion, and takes invalid data_base64 as no data (tests/unit/test_cloudevents_sdk.py).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import BadRequest
from .http import HttpRequest, body_text, dumps, loads

STRUCTURED_TYPE = "application/cloudevents+json"
BATCH_TYPE = "application/cloudevents-batch+json"
REQUIRED = ("specversion", "id", "source", "type")
SPEC_VERSIONS = ("1.0", "0.3")
HEADER_PREFIX = "ce-"


@dataclass(frozen=True)
class CloudEventData:
    """A received CloudEvent: its attributes (extensions included) and its data."""

    attributes: dict[str, str]
    body: str | None
    is_base64: bool
    mode: str  # "binary" or "structured"


def is_cloudevent(request: HttpRequest) -> bool:
    """True when the request carries a CloudEvent in either mode (or claims to)."""
    if request.content_type in (STRUCTURED_TYPE, BATCH_TYPE):
        return True
    return any(name.startswith(HEADER_PREFIX) for name in request.headers)


def parse_cloudevent(request: HttpRequest) -> CloudEventData:
    """The CloudEvent in `request`; BadRequest names the attribute or part that is wrong."""
    if request.content_type == BATCH_TYPE:
        raise BadRequest("batched CloudEvents (application/cloudevents-batch+json) are not supported; send one event")
    if request.content_type == STRUCTURED_TYPE:
        return _structured(request)
    return _binary(request)


def _binary(request: HttpRequest) -> CloudEventData:
    attributes = {
        name[len(HEADER_PREFIX):]: unquote(value)
        for name, value in request.headers.items()
        if name.startswith(HEADER_PREFIX)
    }
    if request.content_type:
        attributes["datacontenttype"] = request.header("content-type")
    _check_required(attributes, "header ce-")
    body, is_base64 = body_text(request.body, request.content_type)
    return CloudEventData(attributes, body, is_base64, "binary")


def _structured(request: HttpRequest) -> CloudEventData:
    try:
        envelope = loads(request.body)
    except ValueError as exc:
        raise BadRequest(f"structured CloudEvent: body is not valid JSON ({exc})") from None
    if not isinstance(envelope, dict):
        raise BadRequest("structured CloudEvent: body must be a JSON object")
    attributes: dict[str, str] = {}
    for key, value in envelope.items():
        if key in ("data", "data_base64"):
            continue
        if not isinstance(value, (str, int, bool)):
            raise BadRequest(f"structured CloudEvent: attribute {key!r} must be a string, integer or boolean")
        attributes[key] = value if isinstance(value, str) else dumps(value).decode()
    _check_required(attributes, "attribute ")
    if "data" in envelope and "data_base64" in envelope:
        raise BadRequest("structured CloudEvent: set either 'data' or 'data_base64', not both")
    if "data_base64" in envelope:
        encoded = envelope["data_base64"]
        if not isinstance(encoded, str):
            raise BadRequest("structured CloudEvent: 'data_base64' must be a string")
        try:
            base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise BadRequest("structured CloudEvent: 'data_base64' is not valid base64") from None
        return CloudEventData(attributes, encoded, True, "structured")
    if "data" not in envelope:
        return CloudEventData(attributes, None, False, "structured")
    data = envelope["data"]
    body = data if isinstance(data, str) else dumps(data).decode()
    return CloudEventData(attributes, body, False, "structured")


def _check_required(attributes: dict[str, str], where: str) -> None:
    missing = [name for name in REQUIRED if not attributes.get(name)]
    if missing:
        names = ", ".join(f"{where}{name}" for name in missing)
        raise BadRequest(f"CloudEvent is missing required {names}")
    if attributes["specversion"] not in SPEC_VERSIONS:
        raise BadRequest(
            f"CloudEvent {where}specversion {attributes['specversion']!r} is not supported "
            f"(expected one of {', '.join(SPEC_VERSIONS)})"
        )

