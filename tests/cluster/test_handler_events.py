"""Events on the cluster: examples/handlers/digit-events behind a real Knative Eventing broker.

Knative Eventing 1.22 (core, MT channel-based broker, in-memory channel; support.cluster.stack)
runs on the cluster. In a fresh namespace the test creates what a user of the example would:
the Broker `default`, the ConfigMap with `on_scan.py`, and the AIFunction. The operator renders the Trigger; Eventing's controllers, broker ingress and
filter deliver events to the function through the networking layer's internal gateway.

The Broker is configured the way this test documents and asserts (docs/handlers.md):
`delivery: {retry: 2, backoffPolicy: linear, backoffDelay: PT0.5S, deadLetterSink: recorder}`;
a Trigger without its own `delivery` (the operator renders none) inherits it. So a delivery the
function answers with a 5xx is tried 1 + 2 times and then goes to the dead-letter sink; a 4xx other
than 404/408/409/429 is not retried and goes there at once, with `knativeerrorcode` and
`knativeerrordata` extensions saying what the function answered.

The recorder (support.cluster.recorder) is a test instrument, not a stand-in for a component: a plain
Pod (the handler image's Python) that prints every request it gets as one JSON line and answers 202.
A second Trigger sends it the function's reply events (type dev.aifn.digits.classified); the Broker's dead letters go to it too.
The ConfigMap holds the example's `on_scan.py` unchanged plus a wrapper that raises for events with
the extension `aifntest=raise`, the handler that raises.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sklearn.datasets import load_digits

from .conftest import ClusterClient
from .functions import (HANDLER_EXAMPLES, code_config_map, condition, delete_namespace, diagnose,
                        example_function, fresh_namespace, handler_logs, handler_ready, model_volume)
from support.cluster.recorder import recorder, records, sink, trigger_to_recorder

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

EXAMPLE = HANDLER_EXAMPLES / "digit-events"
NAME = "digit-events"
SCANNED, CLASSIFIED = "dev.aifn.digits.scanned", "dev.aifn.digits.classified"
RETRIES = 2
READY_TIMEOUT = 300.0  # the example's startupTimeout (5m)
DELIVERY_TIMEOUT = 120.0

RAISING_WRAPPER = '''

# Added by tests/cluster/test_handler_events.py: a handler that raises, for events marked aifntest=raise.
_classify = lambda_handler


def lambda_handler(event, context):
    attributes = event.get("cloudEvent") or {}
    if attributes.get("aifntest") == "raise":
        raise RuntimeError(f"raised on purpose for event {attributes['id']}")
    return _classify(event, context)
'''


def broker(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
            "metadata": {"name": "default", "namespace": namespace},
            "spec": {"delivery": {"retry": RETRIES, "backoffPolicy": "linear", "backoffDelay": "PT0.5S",
                                  "deadLetterSink": sink("/dead-letter")}}}


def replies_trigger(namespace: str) -> dict[str, Any]:
    return trigger_to_recorder(namespace, "classified-to-recorder", CLASSIFIED, "/classified")


class Events:
    """The namespace with broker, recorder and function, and how the test talks to them."""

    def __init__(self, cluster: ClusterClient, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.function: dict[str, Any] = {}

    def broker_address(self) -> tuple[str, str, str]:
        """(ClusterIP, Host, path) of the Broker's ingress address, as its status gives it."""
        url = self.cluster.get("broker", "default", "-n", self.namespace)["status"]["address"]["url"]
        host, _, path = url.removeprefix("http://").partition("/")
        service, namespace = host.split(".")[:2]
        ip = self.cluster.get("service", service, "-n", namespace)["spec"]["clusterIP"]
        return ip, host, "/" + path

    def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST to the Broker's ingress from the host (kube-proxy routes the ClusterIP)."""
        ip, host, path = self.broker_address()
        connection = http.client.HTTPConnection(ip, 80, timeout=30)
        try:
            connection.request("POST", path, body=body, headers={"Host": host, **headers})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def send_scan(self, event_id: str, data: dict[str, Any], **extensions: str) -> None:
        headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/scanner/test", "ce-type": SCANNED,
                   "Content-Type": "application/json", **{f"ce-{k}": v for k, v in extensions.items()}}
        status, body = self.send(json.dumps(data).encode(), headers)
        assert status == 202, f"the broker ingress answered {status} {body[:300]!r} to event {event_id}"

    def recorded(self) -> list[dict[str, Any]]:
        return records(self.cluster.kubectl("logs", "recorder", "-n", self.namespace, check=False).stdout)

    def wait_recorded(self, what: str, match: Any) -> dict[str, Any]:
        return self.cluster.wait_for(
            what, lambda: next((r for r in self.recorded() if match(r)), None), DELIVERY_TIMEOUT,
            lambda: "recorded:\n" + "\n".join(json.dumps(r)[:300] for r in self.recorded()[-10:]) + "\n" +
            diagnose(self.cluster, self.namespace, NAME))


@pytest.fixture(scope="module")
def events(cluster: ClusterClient) -> Iterator[Events]:
    handler_ready(cluster)
    namespace = fresh_namespace(cluster, "events")
    setup = Events(cluster, namespace)
    try:
        cluster.apply(*model_volume(namespace), *recorder(namespace), broker(namespace), replies_trigger(namespace))
        function = example_function(EXAMPLE / "digit-events.yaml", namespace)
        code = (EXAMPLE / "on_scan.py").read_text() + RAISING_WRAPPER
        cluster.apply(code_config_map(function, code), function)
        started = time.monotonic()

        def ready() -> dict[str, Any] | None:
            live = cluster.get("aifunction", NAME, "-n", namespace)
            return live if condition(live, "Ready").get("status") == "True" else None

        setup.function = cluster.wait_for(f"AIFunction {namespace}/{NAME} Ready", ready, READY_TIMEOUT,
                                          lambda: diagnose(cluster, namespace, NAME))
        cluster.wait_pod_ready(namespace, "recorder", 120)
        print(f"\n{namespace}/{NAME} Ready {time.monotonic() - started:.0f}s after apply")
        yield setup
    finally:
        cluster.kubectl("delete", "aifunction", NAME, "-n", namespace, "--wait=false", check=False)
        delete_namespace(cluster, namespace)


def digit(index: int) -> tuple[list[float], int]:
    digits = load_digits()
    return digits.images[index].reshape(-1).tolist(), int(digits.target[index])


def test_triggers_ready_comes_from_eventing(events: Events) -> None:
    triggers = condition(events.function, "TriggersReady")
    assert (triggers.get("status"), triggers.get("reason")) == ("True", "TriggersReady"), triggers
    owned = [t for t in events.cluster.get("triggers", "-n", events.namespace)["items"]
             if any(ref.get("kind") == "AIFunction" for ref in t["metadata"].get("ownerReferences", []))]
    assert len(owned) == 1, [t["metadata"]["name"] for t in owned]
    trigger = owned[0]
    assert trigger["spec"]["filter"] == {"attributes": {"type": SCANNED}}
    for kind in ("Ready", "BrokerReady", "SubscriberResolved", "SubscriptionReady", "DependencyReady"):
        assert condition(trigger, kind).get("status") == "True", (kind, trigger["status"])
    # Eventing resolved the subscriber to the function's cluster-local address (spec.triggers.http.visibility).
    assert trigger["status"]["subscriberUri"] == f"http://{NAME}.{events.namespace}.svc.cluster.local"
    assert events.function["status"]["url"] == trigger["status"]["subscriberUri"]


def test_an_event_reaches_the_function_and_its_reply_comes_back_through_the_broker(events: Events) -> None:
    pixels, label = digit(42)
    event_id = f"scan-{uuid.uuid4().hex[:8]}"
    sent = time.time()
    events.send_scan(event_id, {"scanId": "s-42", "pixels": pixels})
    reply = events.wait_recorded(f"the reply to {event_id} at the recorder",
                                 lambda r: r["path"] == "/classified" and r["headers"].get("ce-id") == f"{event_id}-classified")
    assert reply["headers"]["ce-type"] == CLASSIFIED
    assert reply["headers"]["ce-source"] == f"/aifn/functions/{NAME}"
    result = json.loads(reply["body"])
    assert result["label"] == label and result["eventId"] == event_id and result["scanId"] == "s-42", result
    assert result["eventSource"] == "/scanner/test"
    logged = handler_logs(events.cluster, events.namespace, NAME)
    assert f'"eventId": "{event_id}"' in logged, logged[-2000:]
    print(f"\nevent {event_id}: reply at the recorder {reply['at'] - sent:.2f}s after the POST to the broker")


def test_malformed_cloudevents_are_refused_by_the_broker_ingress(events: Events) -> None:
    pixels, _ = digit(7)
    data = json.dumps({"pixels": pixels}).encode()
    base = {"ce-specversion": "1.0", "ce-id": "bad-1", "ce-source": "/scanner/test", "ce-type": SCANNED,
            "Content-Type": "application/json"}
    for missing in ("ce-type", "ce-source", "ce-id"):
        headers = {k: v for k, v in base.items() if k != missing}
        status, body = events.send(data, headers)
        assert status == 400, f"without {missing} the ingress answered {status} {body[:200]!r}"
    status, body = events.send(b"{not json", {"Content-Type": "application/cloudevents+json"})
    assert status == 400, (status, body[:200])
    assert not [r for r in events.recorded() if r["headers"].get("ce-id") == "bad-1"], "a refused event was delivered"


def test_a_handler_that_raises_is_retried_then_dead_lettered(events: Events) -> None:
    pixels, _ = digit(3)
    event_id = f"raise-{uuid.uuid4().hex[:8]}"
    events.send_scan(event_id, {"pixels": pixels}, aifntest="raise")
    dead = events.wait_recorded(f"{event_id} at the dead-letter sink",
                                lambda r: r["path"] == "/dead-letter" and r["headers"].get("ce-id") == event_id)
    assert dead["headers"]["ce-type"] == SCANNED and dead["headers"].get("ce-aifntest") == "raise"
    assert dead["headers"].get("ce-knativeerrorcode") == "500", dead["headers"]
    error = base64.b64decode(dead["headers"].get("ce-knativeerrordata", "")).decode(errors="replace")
    assert f"raised on purpose for event {event_id}" in error, error
    assert json.loads(dead["body"]) == {"pixels": pixels}, "the dead letter carries the event's data"
    attempts = handler_logs(events.cluster, events.namespace, NAME).count(f"RuntimeError: raised on purpose for event {event_id}")
    assert attempts == 1 + RETRIES, f"{attempts} attempts logged; the Broker's delivery says 1 + {RETRIES} retries"


def test_event_data_the_handler_refuses_is_dead_lettered_without_retries(events: Events) -> None:
    event_id = f"nopixels-{uuid.uuid4().hex[:8]}"
    events.send_scan(event_id, {"scanId": "s-0", "pixel": [1, 2, 3]})
    dead = events.wait_recorded(f"{event_id} at the dead-letter sink",
                                lambda r: r["path"] == "/dead-letter" and r["headers"].get("ce-id") == event_id)
    assert dead["headers"].get("ce-knativeerrorcode") == "400", dead["headers"]
    error = base64.b64decode(dead["headers"].get("ce-knativeerrordata", "")).decode(errors="replace")
    assert "event data must be" in error, error
    time.sleep(2)  # a retry (there must be none) would reach the dead-letter sink again within the backoff
    copies = [r for r in events.recorded() if r["headers"].get("ce-id") == event_id]
    assert len(copies) == 1, f"{len(copies)} dead letters for {event_id}"
