"""handler/cloudevents.py beside the official `cloudevents` SDK (the version kserve installs).

The SDK is the reference sender: events it encodes, in binary and structured mode, must reach a
handler with the same attributes and data. It is not the parser: test_why_not_the_sdk pins the
SDK behaviours that make its `from_http` worse for us (the one-line reason in cloudevents.py's
docstring); if that test fails after an SDK upgrade, the reason may no longer hold.
"""

from __future__ import annotations

import base64
import json

import pytest

from aifunction_operator.handler.cloudevents import CloudEventData, parse_cloudevent
from aifunction_operator.handler.errors import BadRequest
from aifunction_operator.handler.http import HttpRequest

cloudevents = pytest.importorskip("cloudevents", reason="the cloudevents SDK comes with kserve (the handler extra)")
from cloudevents.conversion import to_binary, to_structured  # noqa: E402
from cloudevents.http import CloudEvent, from_http  # noqa: E402

ATTRIBUTES = {"type": "dev.aifn.order.created", "source": "/shop", "subject": "order/1", "tenant": "acme",
              "traceparent": "00-abc-def-01"}


def post(headers: dict[str, str], body: bytes) -> HttpRequest:
    return HttpRequest("POST", "/", {k.lower(): v for k, v in headers.items()}, {}, body)


def parse(headers: dict[str, str], body: bytes) -> CloudEventData:
    return parse_cloudevent(post(headers, body))


@pytest.mark.parametrize("encode", [to_binary, to_structured], ids=["binary", "structured"])
def test_json_data_from_the_sdk(encode) -> None:
    event = CloudEvent({**ATTRIBUTES, "datacontenttype": "application/json"}, {"items": 3, "note": "é"})
    seen = parse(*encode(event))
    assert seen.attributes == event.get_attributes()  # extensions included, nothing added
    assert not seen.is_base64 and json.loads(seen.body) == {"items": 3, "note": "é"}


@pytest.mark.parametrize("encode", [to_binary, to_structured], ids=["binary", "structured"])
def test_bytes_data_from_the_sdk(encode) -> None:
    event = CloudEvent({**ATTRIBUTES, "datacontenttype": "application/octet-stream"}, b"\x00\x01raw\xff")
    seen = parse(*encode(event))
    assert seen.attributes == event.get_attributes()
    assert seen.is_base64 and base64.b64decode(seen.body) == b"\x00\x01raw\xff"


def test_text_data_from_the_sdk() -> None:
    event = CloudEvent({**ATTRIBUTES, "datacontenttype": "text/plain"}, "hello")
    binary = parse(*to_binary(event, data_marshaller=lambda text: text))  # the SDK's default would JSON-quote it
    structured = parse(*to_structured(event))
    assert binary.body == structured.body == "hello" and not binary.is_base64
    assert binary.attributes == structured.attributes == event.get_attributes()


def test_the_sdk_reads_what_we_read_alike() -> None:
    """On well-formed events the SDK and we agree on the attributes, bar the `time` it makes up."""
    headers = {"ce-specversion": "1.0", "ce-id": "ping-7", "ce-source": "/apis/v1/namespaces/default/pingsources/nightly",
               "ce-type": "dev.knative.sources.ping", "ce-tenant": "acme", "content-type": "application/json"}
    sdk = from_http(headers, b'{"report": "daily"}', data_unmarshaller=lambda data: data)
    ours = parse(headers, b'{"report": "daily"}')
    assert {k: v for k, v in sdk.get_attributes().items() if k != "time"} == ours.attributes
    assert sdk.get_data() == ours.body.encode()


def test_why_not_the_sdk() -> None:
    """Each claim of cloudevents.py's docstring, against the SDK and against us."""
    binary = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "content-type": "application/json"}

    # It adds a `time` the sender did not send (user code would see it in event["cloudEvent"]).
    assert "time" in from_http(binary, b"{}").get_attributes()
    assert "time" not in parse(binary, b"{}").attributes

    # It leaves ce-* values percent-encoded (the HTTP binding says to decode them).
    encoded = {**binary, "ce-subject": "caf%C3%A9 order%25"}
    assert from_http(encoded, b"{}")["subject"] == "caf%C3%A9 order%25"
    assert parse(encoded, b"{}").attributes["subject"] == "café order%"

    # Without ce-id it takes the request for structured mode and blames specversion.
    missing = {k: v for k, v in binary.items() if k != "ce-id"}
    with pytest.raises(Exception, match="specversion") as sdk_error:
        from_http(missing, b"{}")
    assert "ce-id" not in str(sdk_error.value)
    with pytest.raises(BadRequest, match="missing required header ce-id"):
        parse(missing, b"{}")

    # It takes invalid data_base64 as no data at all.
    structured = {"content-type": "application/cloudevents+json"}
    bad = json.dumps({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data_base64": "!!"}).encode()
    assert from_http(structured, bad).get_data() is None
    with pytest.raises(BadRequest, match="'data_base64' is not valid base64"):
        parse(structured, bad)
