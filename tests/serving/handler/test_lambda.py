"""A Lambda-style handler (written here, not taken from the repository) in front of a real Triton.

Through the real handler container process: correct digit predictions, the API-Gateway
event shape, an exception in user code -> 500 with the message and the server keeps
serving, malformed requests -> 400 naming the problem, the proxy response contract.
"""

from __future__ import annotations

import base64
import json
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from .conftest import HandlerServer, post_json, request

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]

APP = textwrap.dedent(
    '''
    import json
    import os

    import numpy as np

    LOADED_IN = os.getpid()   # module-level code runs once per process
    CALLS = {"n": 0}


    def lambda_handler(event, context):
        CALLS["n"] += 1
        action = (event["queryStringParameters"] or {}).get("action", "predict")
        if action == "boom":
            return {"ratio": 1 / 0}
        if action == "echo":
            return {"event": event, "remaining_ms": context.get_remaining_time_in_millis(),
                    "function": context.function_name, "request_id": context.aws_request_id,
                    "pid": LOADED_IN, "calls": CALLS["n"], "model": context.model_name}
        if action == "teapot":
            return {"statusCode": 418, "headers": {"X-Kind": "teapot"}, "body": "short and stout"}
        if action == "binary":
            return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                    "body": "AAEC/w==", "isBase64Encoded": True}
        if action == "bad-status":
            return {"statusCode": "ok"}
        if action == "bad-inputs":
            context.infer({"pixels": np.zeros((1, 8, 8), np.float32)})
        body = json.loads(event["body"])
        images = np.asarray(body["images"], dtype=np.float32).reshape(-1, 8, 8)
        out = context.infer({"image": images})
        labels = out["label"][:, 0]
        conf = out["probabilities"][np.arange(len(labels)), labels]
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"labels": labels.tolist(), "confidence": conf.tolist()})}
    '''
)


@pytest.fixture(scope="module")
def lambda_fn(start_handler, tmp_path_factory: pytest.TempPathFactory) -> HandlerServer:
    code = tmp_path_factory.mktemp("user-code")
    (code / "app.py").write_text(APP)
    return start_handler(code, "app:lambda_handler")


def test_predictions_match_the_labels(lambda_fn: HandlerServer, digits_data) -> None:
    images, truth = digits_data
    reply = post_json(f"{lambda_fn.url}/", {"images": images[:120].reshape(120, 64).tolist()})
    assert reply.status == 200, reply.body
    result = reply.json()
    labels = np.array(result["labels"])
    assert labels.shape == (120,)
    assert (labels == truth[:120]).mean() >= 0.97
    assert all(0.0 <= c <= 1.0 for c in result["confidence"])


def test_handler_answers_what_triton_answers(lambda_fn: HandlerServer, digits_triton, digits_data) -> None:
    images, _ = digits_data
    batch = images[1000:1032]
    client = httpclient.InferenceServerClient(digits_triton.http_url)
    tensor = httpclient.InferInput("image", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    direct = client.infer("digits", [tensor])
    client.close()
    reply = post_json(f"{lambda_fn.url}/invoke", {"images": batch.tolist()})
    assert reply.status == 200, reply.body
    assert reply.json()["labels"] == direct.as_numpy("label")[:, 0].tolist()
    expected_conf = direct.as_numpy("probabilities").max(axis=1)
    np.testing.assert_allclose(reply.json()["confidence"], expected_conf, rtol=1e-6)


def test_event_has_the_api_gateway_proxy_shape(lambda_fn: HandlerServer) -> None:
    reply = request(
        f"{lambda_fn.url}/invoke?action=echo&x=1",
        b"plain text",
        {"Content-Type": "text/plain", "X-Request-Id": "req-42", "X-Custom": "yes"},
    )
    assert reply.status == 200, reply.body
    seen = reply.json()
    event = seen["event"]
    assert event["httpMethod"] == "POST" and event["path"] == "/invoke"
    assert event["queryStringParameters"] == {"action": "echo", "x": "1"}
    assert event["headers"]["x-custom"] == "yes"
    assert event["body"] == "plain text" and event["isBase64Encoded"] is False
    assert event["requestContext"]["requestId"] == "req-42" == seen["request_id"]
    assert "cloudEvent" not in event
    assert seen["function"] == "digits-fn" and seen["model"] == "digits"
    assert 0 < seen["remaining_ms"] <= 300_000


def test_binary_body_arrives_base64_encoded(lambda_fn: HandlerServer) -> None:
    raw = bytes([0, 1, 2, 255, 254])
    reply = request(f"{lambda_fn.url}/?action=echo", raw, {"Content-Type": "application/octet-stream"})
    event = reply.json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_user_code_loads_once_per_process(lambda_fn: HandlerServer) -> None:
    first = request(f"{lambda_fn.url}/?action=echo", b"").json()
    second = request(f"{lambda_fn.url}/?action=echo", b"").json()
    assert first["pid"] == second["pid"] == lambda_fn.proc.pid
    assert second["calls"] > first["calls"]


def test_exception_in_user_code_is_a_500_and_the_function_keeps_serving(lambda_fn: HandlerServer, digits_data) -> None:
    reply = request(f"{lambda_fn.url}/?action=boom", b"{}", {"Content-Type": "application/json"})
    assert reply.status == 500
    body = reply.json()
    assert body["error"] == "ZeroDivisionError: division by zero"
    assert "Traceback" not in reply.body.decode() and "requestId" in body
    assert "Traceback" in lambda_fn.log() and "ZeroDivisionError" in lambda_fn.log()
    images, truth = digits_data
    after = post_json(f"{lambda_fn.url}/", {"images": images[:20].tolist()})
    assert after.status == 200 and (np.array(after.json()["labels"]) == truth[:20]).mean() >= 0.9
    assert lambda_fn.proc.poll() is None


def test_malformed_json_is_a_400_naming_the_body(lambda_fn: HandlerServer) -> None:
    reply = request(f"{lambda_fn.url}/", b'{"images": [1, 2', {"Content-Type": "application/json"})
    assert reply.status == 400
    assert "request body" in reply.json()["error"] and "not valid JSON" in reply.json()["error"]
    assert request(f"{lambda_fn.url}/v2/health/ready").status == 200


def test_inputs_the_model_does_not_take_are_a_400_naming_the_input(lambda_fn: HandlerServer) -> None:
    reply = request(f"{lambda_fn.url}/?action=bad-inputs", b"{}", {"Content-Type": "application/json"})
    assert reply.status == 400
    error = reply.json()["error"]
    assert "'pixels'" in error and "'image'" in error


def test_an_error_raised_inside_user_code_by_numpy_is_a_500(lambda_fn: HandlerServer) -> None:
    reply = post_json(f"{lambda_fn.url}/", {"images": [[1.0] * 63]})
    assert reply.status == 500  # reshape(-1, 8, 8) fails inside the user's code: a ValueError
    assert reply.json()["error"].startswith("ValueError")


def test_inputs_triton_rejects_are_a_400_with_tritons_reason(lambda_fn: HandlerServer) -> None:
    reply = post_json(f"{lambda_fn.url}/", {"images": np.zeros((129, 64)).tolist()})
    assert reply.status == 400
    assert "rejected the inputs" in reply.json()["error"] and "batch-size must be <= 128" in reply.json()["error"]


def test_proxy_response_status_headers_and_base64_body(lambda_fn: HandlerServer) -> None:
    teapot = request(f"{lambda_fn.url}/?action=teapot", b"")
    assert teapot.status == 418 and teapot.body == b"short and stout" and teapot.headers["x-kind"] == "teapot"
    binary = request(f"{lambda_fn.url}/?action=binary", b"")
    assert binary.status == 200 and binary.body == bytes([0, 1, 2, 255])
    assert binary.headers["content-type"] == "application/octet-stream"


def test_invalid_proxy_response_is_a_500_that_says_so(lambda_fn: HandlerServer) -> None:
    reply = request(f"{lambda_fn.url}/?action=bad-status", b"")
    assert reply.status == 500 and "statusCode" in reply.json()["error"]


def test_concurrent_requests_all_answer_correctly(lambda_fn: HandlerServer, digits_data) -> None:
    images, truth = digits_data
    results: dict[int, int] = {}

    def one(i: int) -> None:
        reply = post_json(f"{lambda_fn.url}/", {"images": [images[i].tolist()]})
        results[i] = reply.json()["labels"][0] if reply.status == 200 else -reply.status

    threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(64))
    correct = sum(results[i] == truth[i] for i in range(64))
    assert correct >= 62, results


def test_the_shipped_digits_example(start_handler, digits_data) -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "handlers" / "digits"
    server = start_handler(example, "handler:lambda_handler")
    images, truth = digits_data
    one = post_json(f"{server.url}/", {"pixels": images[7].ravel().tolist()})
    assert one.status == 200 and one.json()["label"] == truth[7] and 0.5 < one.json()["confidence"] <= 1.0
    many = post_json(f"{server.url}/", {"images": images[100:150].reshape(50, 64).tolist()})
    labels = [p["label"] for p in many.json()["predictions"]]
    assert np.mean(np.array(labels) == truth[100:150]) >= 0.95
    bad = post_json(f"{server.url}/", {"pixels": [99] * 64})
    assert bad.status == 400 and "between 0 and 16" in bad.json()["error"]
    assert json.loads(request(f"{server.url}/", b"nope", {"Content-Type": "text/plain"}).body)["error"].startswith("body must be JSON")


def test_tritonclient_mode_gives_the_same_answers(start_handler, lambda_fn: HandlerServer, tmp_path_factory, digits_data) -> None:
    code = tmp_path_factory.mktemp("user-code-tc")
    (code / "app.py").write_text(APP)
    with_tritonclient = start_handler(code, "app:lambda_handler", AIFN_TRITON_CLIENT="tritonclient")
    images, _ = digits_data
    payload = {"images": images[500:540].tolist()}
    fast, tc = post_json(f"{lambda_fn.url}/", payload), post_json(f"{with_tritonclient.url}/", payload)
    assert fast.status == tc.status == 200
    assert fast.json()["labels"] == tc.json()["labels"]
    np.testing.assert_allclose(fast.json()["confidence"], tc.json()["confidence"], rtol=1e-6)
    too_big = {"images": np.zeros((129, 64)).tolist()}
    assert post_json(f"{with_tritonclient.url}/", too_big).status == 400
    bad = request(f"{with_tritonclient.url}/?action=bad-inputs", b"{}", {"Content-Type": "application/json"})
    assert bad.status == 400 and "'pixels'" in bad.json()["error"]


def test_inline_execution_behaves_the_same(start_handler, lambda_fn: HandlerServer, tmp_path_factory, digits_data) -> None:
    code = tmp_path_factory.mktemp("user-code-inline")
    (code / "app.py").write_text(APP)
    inline = start_handler(code, "app:lambda_handler", AIFN_HANDLER_EXECUTION="inline")
    images, truth = digits_data
    payload = {"images": images[600:650].tolist()}
    threaded, inlined = post_json(f"{lambda_fn.url}/", payload), post_json(f"{inline.url}/", payload)
    assert threaded.status == inlined.status == 200
    assert threaded.json() == inlined.json()
    boom = request(f"{inline.url}/?action=boom", b"{}", {"Content-Type": "application/json"})
    assert boom.status == 500 and boom.json()["error"] == "ZeroDivisionError: division by zero"
    bad = request(f"{inline.url}/?action=bad-inputs", b"{}", {"Content-Type": "application/json"})
    assert bad.status == 400 and "'pixels'" in bad.json()["error"]
    too_big = post_json(f"{inline.url}/", {"images": np.zeros((129, 64)).tolist()})
    assert too_big.status == 400 and "batch-size" in too_big.json()["error"]
    results: dict[int, int] = {}

    def one(i: int) -> None:
        reply = post_json(f"{inline.url}/", {"images": [images[i].tolist()]})
        results[i] = reply.json()["labels"][0] if reply.status == 200 else -reply.status

    threads = [threading.Thread(target=one, args=(i,)) for i in range(700, 740)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results[i] == truth[i] for i in range(700, 740)) >= 39
