"""CloudEvents (binary and structured content modes) delivered to a Lambda-style handler, as Knative Eventing sends them."""

from __future__ import annotations

import base64
import json
import textwrap

import pytest

from .conftest import HandlerServer, request

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]

APP = textwrap.dedent(
    '''
    import json

    def lambda_handler(event, context):
        ce = event.get("cloudEvent")
        data = json.loads(event["body"]) if event["body"] and not event["isBase64Encoded"] else event["body"]
        return {"cloudEvent": ce, "data": data, "isBase64Encoded": event["isBase64Encoded"]}
    '''
)

BINARY_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "ping-7",
    "ce-source": "/apis/v1/namespaces/default/pingsources/nightly",
    "ce-type": "dev.knative.sources.ping",
    "ce-time": "2026-11-28T03:00:00Z",
    "ce-traceparent": "00-abc-def-01",
    "Content-Type": "application/json",
}


@pytest.fixture(scope="module")
def events_fn(start_handler, tmp_path_factory: pytest.TempPathFactory) -> HandlerServer:
    code = tmp_path_factory.mktemp("events")
    (code / "on_event.py").write_text(APP)
    return start_handler(code, "on_event:lambda_handler")


def test_binary_mode_attributes_and_data(events_fn: HandlerServer) -> None:
    reply = request(f"{events_fn.url}/", json.dumps({"report": "daily"}).encode(), BINARY_HEADERS)
    assert reply.status == 200, reply.body
    seen = reply.json()
    assert seen["data"] == {"report": "daily"}
    ce = seen["cloudEvent"]
    assert ce["type"] == "dev.knative.sources.ping" and ce["id"] == "ping-7"
    assert ce["source"] == "/apis/v1/namespaces/default/pingsources/nightly"
    assert ce["time"] == "2026-11-28T03:00:00Z" and ce["traceparent"] == "00-abc-def-01"
    assert ce["datacontenttype"] == "application/json" and ce["specversion"] == "1.0"


def test_structured_mode_attributes_and_data(events_fn: HandlerServer) -> None:
    envelope = {
        "specversion": "1.0", "id": "order-1", "source": "/shop", "type": "dev.aifn.order.created",
        "subject": "order/1", "datacontenttype": "application/json", "tenant": "acme",
        "data": {"items": 3},
    }
    reply = request(f"{events_fn.url}/invoke", json.dumps(envelope).encode(),
                    {"Content-Type": "application/cloudevents+json; charset=utf-8"})
    assert reply.status == 200, reply.body
    seen = reply.json()
    assert seen["data"] == {"items": 3}
    assert seen["cloudEvent"] == {k: v for k, v in envelope.items() if k != "data"}


def test_structured_mode_data_base64(events_fn: HandlerServer) -> None:
    envelope = {"specversion": "1.0", "id": "b", "source": "/s", "type": "t",
                "data_base64": base64.b64encode(b"\x00\x01raw").decode()}
    reply = request(f"{events_fn.url}/", json.dumps(envelope).encode(), {"Content-Type": "application/cloudevents+json"})
    seen = reply.json()
    assert seen["isBase64Encoded"] is True and base64.b64decode(seen["data"]) == b"\x00\x01raw"


def test_binary_mode_without_a_required_attribute_is_a_400_naming_it(events_fn: HandlerServer) -> None:
    headers = {k: v for k, v in BINARY_HEADERS.items() if k != "ce-id"}
    reply = request(f"{events_fn.url}/", b"{}", headers)
    assert reply.status == 400 and "ce-id" in reply.json()["error"]


def test_structured_mode_malformed_envelope_is_a_400(events_fn: HandlerServer) -> None:
    ct = {"Content-Type": "application/cloudevents+json"}
    broken = request(f"{events_fn.url}/", b'{"specversion": "1.0", ', ct)
    assert broken.status == 400 and "not valid JSON" in broken.json()["error"]
    missing = request(f"{events_fn.url}/", json.dumps({"specversion": "1.0", "id": "x", "source": "/s"}).encode(), ct)
    assert missing.status == 400 and "attribute type" in missing.json()["error"]
    version = request(f"{events_fn.url}/", json.dumps({"specversion": "9", "id": "x", "source": "/s", "type": "t"}).encode(), ct)
    assert version.status == 400 and "specversion" in version.json()["error"]
    batch = request(f"{events_fn.url}/", b"[]", {"Content-Type": "application/cloudevents-batch+json"})
    assert batch.status == 400 and "batch" in batch.json()["error"]
    assert request(f"{events_fn.url}/v2/health/ready").status == 200
