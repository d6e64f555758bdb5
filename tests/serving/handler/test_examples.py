"""The shipped handler examples: each renders into objects ksvc-check accepts, and each
answers correctly in the real handler container in front of a real Triton."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import HandlerServer, request

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "handlers"
KSVC_CHECK = ROOT / "bin" / "ksvc-check"
FUNCTIONS = sorted(EXAMPLES.glob("*/*.yaml"))


def render(path: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "aifunction_operator", "render", "-f", str(path)],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_every_example_has_a_readme_and_its_code() -> None:
    assert len(FUNCTIONS) == 4
    for path in FUNCTIONS:
        fn = yaml.safe_load(path.read_text())
        module = fn["spec"]["handler"]["entrypoint"].split(":")[0]
        assert (path.parent / f"{module}.py").is_file(), path
        assert (path.parent / "README.md").is_file(), path
        assert fn["spec"]["handler"]["configMap"]["key"] == f"{module}.py"


@pytest.mark.parametrize("path", FUNCTIONS, ids=lambda p: p.parent.name)
def test_examples_render_into_services_ksvc_check_accepts(path: Path) -> None:
    if not KSVC_CHECK.exists():
        pytest.skip(f"{KSVC_CHECK} missing; run `make tools`")
    stream = render(path)
    kinds = [doc["kind"] for doc in yaml.safe_load_all(stream)]
    assert kinds[0] == "Service"
    checked = subprocess.run([str(KSVC_CHECK), "-"], input=stream, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and ": valid" in checked.stdout, checked.stdout + checked.stderr


@pytest.mark.triton
def test_canary_passes_on_a_ping(start_handler) -> None:
    server: HandlerServer = start_handler(EXAMPLES / "digits-canary", "canary:lambda_handler")
    reply = request(f"{server.url}/", b'{"minimumAccuracy": 1.0}', {
        "Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "p1", "ce-type": "dev.knative.sources.ping",
        "ce-source": "/apis/v1/namespaces/default/pingsources/digits-canary-every-5-minutes", "ce-time": "2026-11-28T03:00:00Z",
    })
    assert reply.status == 200, reply.body
    assert reply.json()["accuracy"] == 1.0 and reply.json()["wrong"] == []
    assert reply.json()["scheduledAt"] == "2026-11-28T03:00:00Z"


@pytest.mark.triton
def test_digit_events_classifies_structured_and_binary_events(start_handler, digits_data) -> None:
    server: HandlerServer = start_handler(EXAMPLES / "digit-events", "on_scan:lambda_handler")
    images, truth = digits_data
    data = {"scanId": "s-1", "pixels": images[30].ravel().tolist()}
    structured = request(f"{server.url}/", json.dumps({
        "specversion": "1.0", "id": "e-1", "source": "/scanner/7", "type": "dev.aifn.digits.scanned",
        "datacontenttype": "application/json", "data": data}).encode(), {"Content-Type": "application/cloudevents+json"})
    assert structured.status == 200, structured.body
    assert structured.json()["label"] == truth[30] and structured.json()["eventSource"] == "/scanner/7"
    binary = request(f"{server.url}/", json.dumps(data).encode(), {
        "Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "e-2", "ce-source": "/scanner/7",
        "ce-type": "dev.aifn.digits.scanned"})
    assert binary.status == 200 and binary.json()["eventId"] == "e-2" and binary.json()["label"] == truth[30]
    reply = {k.lower(): v for k, v in binary.headers.items() if k.lower().startswith("ce-")}
    assert reply == {"ce-specversion": "1.0", "ce-id": "e-2-classified", "ce-source": "/aifn/functions/digits-fn",
                     "ce-type": "dev.aifn.digits.classified"}, reply
    plain = request(f"{server.url}/", json.dumps(data).encode(), {"Content-Type": "application/json"})
    assert plain.status == 400 and "CloudEvent" in plain.json()["error"]
