"""model_repo/co2 in a real Triton: the card's held-out errors through the server, batching, and
clear errors over HTTP and gRPC."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from aifunction_operator.local.tritonserver import TritonProcess

pytestmark = pytest.mark.triton

MODEL = "co2"
CARD = json.loads((Path(__file__).resolve().parents[3] / "model_repo" / "co2" / "metrics.json").read_text())
SERVED_TOLERANCE = 1e-3  # ppm: the server runs the same TorchScript as the local reference


@pytest.fixture(scope="module")
def held_out(co2_training) -> tuple[np.ndarray, np.ndarray, float]:
    """(contexts [109, 36], targets [109, 12], MASE scale) of the card's held-out forecasts."""
    series = co2_training.co2_series()
    contexts, targets = series.windows(series.held_out_origins)
    return contexts, targets, co2_training.mase_scale(series)


@pytest.fixture()
def http(co2_server: TritonProcess):
    client = httpclient.InferenceServerClient(co2_server.http_url, concurrency=8)
    yield client
    client.close()


@pytest.fixture()
def grpc(co2_server: TritonProcess):
    client = grpcclient.InferenceServerClient(co2_server.grpc_url)
    yield client
    client.close()


def infer(client, module, history: np.ndarray, datatype: str = "FP32") -> np.ndarray:
    tensor = module.InferInput("history", list(history.shape), datatype)
    tensor.set_data_from_numpy(history)
    return client.infer(MODEL, [tensor]).as_numpy("forecast")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_held_out_errors_through_the_server_are_the_cards(request, co2_training, held_out, protocol):
    client = request.getfixturevalue(protocol)
    module = httpclient if protocol == "http" else grpcclient
    contexts, targets, scale = held_out
    served = infer(client, module, contexts)
    assert served.dtype == np.float32 and served.shape == targets.shape
    served_errors = co2_training.errors(served, targets, scale)
    naive_errors = co2_training.errors(co2_training.seasonal_naive(contexts), targets, scale)
    assert served_errors["mae"] == pytest.approx(CARD["held_out"]["model"]["mae"], abs=SERVED_TOLERANCE)
    assert naive_errors == CARD["held_out"]["seasonal_naive"]
    for figure in ("mae", "rmse", "mase"):
        assert served_errors[figure] < naive_errors[figure], (figure, served_errors, naive_errors)


def test_served_forecasts_equal_the_artifacts(http, co2_training, held_out):
    contexts = held_out[0]
    reference = co2_training.predict(Path(co2_training.__file__).parent / "co2" / "1" / "model.pt", contexts)
    np.testing.assert_allclose(infer(http, httpclient, contexts), reference, atol=SERVED_TOLERANCE)


def test_the_forecast_follows_a_shifted_level(http, held_out):
    """The model reads the window relative to its last value: +50 ppm shifts the forecast by 50 ppm."""
    contexts = held_out[0][:4]
    shifted = infer(http, httpclient, contexts + 50.0) - infer(http, httpclient, contexts)
    np.testing.assert_allclose(shifted, 50.0, atol=0.01)


def test_concurrent_requests_are_batched_and_answered_each(http, held_out):
    contexts = held_out[0]
    pending = []
    for i in range(32):
        tensor = httpclient.InferInput("history", [2, 36], "FP32")
        tensor.set_data_from_numpy(contexts[2 * i : 2 * i + 2])
        pending.append(http.async_infer(MODEL, [tensor]))
    answers = np.concatenate([p.get_result().as_numpy("forecast") for p in pending])
    np.testing.assert_allclose(answers, infer(http, httpclient, contexts[:64]), atol=SERVED_TOLERANCE)


def assert_rejected(server: TritonProcess, call, *fragments: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in error: {message}"
    assert server.is_live() and server.is_ready(), "server went down after a bad request"
    return message


@pytest.mark.parametrize("shape", [(2, 35), (2, 12), (2, 36, 1)])
def test_wrong_shape_is_rejected_clearly(http, grpc, co2_server, shape):
    bad = np.full(shape, 350.0, dtype=np.float32)
    assert "400" in assert_rejected(co2_server, lambda: infer(http, httpclient, bad), "'history'", "[-1,36]")
    assert_rejected(co2_server, lambda: infer(grpc, grpcclient, bad), "'history'", "[-1,36]", "INVALID_ARGUMENT")


@pytest.mark.parametrize(("dtype", "datatype"), [(np.float64, "FP64"), (np.int32, "INT32")])
def test_wrong_dtype_is_rejected_clearly(http, grpc, co2_server, dtype, datatype):
    bad = np.full((2, 36), 350, dtype=dtype)
    expected = ("'history'", datatype, "FP32")
    assert "400" in assert_rejected(co2_server, lambda: infer(http, httpclient, bad, datatype), *expected)
    assert_rejected(co2_server, lambda: infer(grpc, grpcclient, bad, datatype), *expected, "INVALID_ARGUMENT")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_are_rejected_by_the_model(http, grpc, co2_server, held_out, value):
    bad = held_out[0][:3].copy()
    bad[1, 7] = value
    expected = ("'history'", "NaN or inf", "[-1, 36]")
    assert "400" in assert_rejected(co2_server, lambda: infer(http, httpclient, bad), *expected)
    assert_rejected(co2_server, lambda: infer(grpc, grpcclient, bad), *expected, "INVALID_ARGUMENT")


def test_one_bad_request_does_not_fail_its_batch_neighbours(http, co2_server, held_out):
    contexts = held_out[0]
    good, bad = [], []
    for i in range(8):
        tensor = httpclient.InferInput("history", [4, 36], "FP32")
        tensor.set_data_from_numpy(contexts[4 * i : 4 * i + 4])
        good.append((i, http.async_infer(MODEL, [tensor])))
        poisoned = contexts[:4].copy()
        poisoned[0, 0] = np.nan
        tensor = httpclient.InferInput("history", [4, 36], "FP32")
        tensor.set_data_from_numpy(poisoned)
        bad.append(http.async_infer(MODEL, [tensor]))
    expected = infer(http, httpclient, contexts[:32])
    for i, pending in good:
        np.testing.assert_allclose(pending.get_result().as_numpy("forecast"), expected[4 * i : 4 * i + 4], atol=SERVED_TOLERANCE)
    for pending in bad:
        with pytest.raises(InferenceServerException, match="'history'"):
            pending.get_result()
    assert co2_server.is_ready()


def test_served_config_is_python_backend_batched_and_on_the_right_device(http):
    import torch

    config = http.get_model_config(MODEL)
    assert config["backend"] == "python" and config["max_batch_size"] >= 64 and "dynamic_batching" in config
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [("history", "TYPE_FP32", [36])]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [("forecast", "TYPE_FP32", [12])]
    expected = "KIND_GPU" if torch.cuda.is_available() else "KIND_CPU"
    assert [group["kind"] for group in config["instance_group"]] == [expected]
