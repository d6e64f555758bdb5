"""model_repo/digits in a real Triton: accuracy, batching, and clear errors over HTTP and gRPC."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException

from aifunction_operator.local.tritonserver import TritonProcess

pytestmark = pytest.mark.triton

MODEL = "digits"
MIN_ACCURACY = 0.97


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


@pytest.fixture()
def http(digits_server: TritonProcess):
    client = httpclient.InferenceServerClient(digits_server.http_url, concurrency=8)
    yield client
    client.close()


@pytest.fixture()
def grpc(digits_server: TritonProcess):
    client = grpcclient.InferenceServerClient(digits_server.grpc_url)
    yield client
    client.close()


def infer(client, module, images: np.ndarray, datatype: str = "FP32"):
    tensor = module.InferInput("image", list(images.shape), datatype)
    tensor.set_data_from_numpy(images)
    return client.infer(MODEL, [tensor])


def classify(client, module, images: np.ndarray, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    probabilities, labels = [], []
    for start in range(0, len(images), batch):
        result = infer(client, module, images[start : start + batch])
        probabilities.append(result.as_numpy("probabilities"))
        labels.append(result.as_numpy("label"))
    return np.concatenate(probabilities), np.concatenate(labels)


def test_all_1797_digits_over_http(http, digits):
    images, truth = digits
    probabilities, labels = classify(http, httpclient, images)
    assert probabilities.shape == (1797, 10) and labels.shape == (1797, 1)
    accuracy = float((labels[:, 0] == truth).mean())
    assert accuracy >= MIN_ACCURACY, f"accuracy on all 1,797 digits {accuracy:.4f}"


def test_held_out_digits_over_grpc(grpc, digits_training):
    split = digits_training.digits_split()
    images, truth = split.images[split.test_idx], split.labels[split.test_idx]
    _, labels = classify(grpc, grpcclient, images)
    accuracy = float((labels[:, 0] == truth).mean())
    assert accuracy >= MIN_ACCURACY, f"held-out accuracy {accuracy:.4f} on {len(truth)} digits"


def test_batch_of_64(http, grpc, digits):
    images = digits[0][:64]
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        result = infer(client, module, images)
        probabilities, labels = result.as_numpy("probabilities"), result.as_numpy("label")
        assert probabilities.dtype == np.float32 and probabilities.shape == (64, 10)
        assert labels.dtype == np.int64 and labels.shape == (64, 1)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        assert (labels[:, 0] == probabilities.argmax(axis=1)).all()
        assert (labels[:, 0] == digits[1][:64]).mean() >= MIN_ACCURACY


def test_concurrent_requests_are_batched_and_answered_each(http, digits_server, digits):
    images, truth = digits
    pending = []
    for i in range(32):
        tensor = httpclient.InferInput("image", [2, 8, 8], "FP32")
        tensor.set_data_from_numpy(images[2 * i : 2 * i + 2])
        pending.append(http.async_infer(MODEL, [tensor]))
    labels = np.concatenate([p.get_result().as_numpy("label")[:, 0] for p in pending])
    assert (labels == truth[:64]).mean() >= MIN_ACCURACY


def assert_rejected(digits_server: TritonProcess, call, *fragments: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in error: {message}"
    assert digits_server.is_live() and digits_server.is_ready(), "server went down after a bad request"
    return message


@pytest.mark.parametrize("shape", [(2, 8, 7), (2, 64), (3, 8, 8, 1)])
def test_wrong_shape_is_rejected_clearly(http, grpc, digits_server, shape):
    bad = np.zeros(shape, dtype=np.float32)
    http_error = assert_rejected(digits_server, lambda: infer(http, httpclient, bad), "'image'", "[-1,8,8]")
    assert "400" in http_error
    assert_rejected(digits_server, lambda: infer(grpc, grpcclient, bad), "'image'", "[-1,8,8]", "INVALID_ARGUMENT")


@pytest.mark.parametrize(("dtype", "datatype"), [(np.float64, "FP64"), (np.int64, "INT64")])
def test_wrong_dtype_is_rejected_clearly(http, grpc, digits_server, dtype, datatype):
    bad = np.zeros((2, 8, 8), dtype=dtype)
    expected = ("'image'", datatype, "FP32")
    assert "400" in assert_rejected(digits_server, lambda: infer(http, httpclient, bad, datatype), *expected)
    assert_rejected(digits_server, lambda: infer(grpc, grpcclient, bad, datatype), *expected, "INVALID_ARGUMENT")


@pytest.mark.parametrize("value", [17.0, -1.0, np.nan])
def test_values_outside_load_digits_range_are_rejected_by_the_model(http, grpc, digits_server, digits, value):
    bad = digits[0][:3].copy()
    bad[1, 4, 4] = value
    expected = ("'image'", "0..16", "[-1, 8, 8]")
    assert "400" in assert_rejected(digits_server, lambda: infer(http, httpclient, bad), *expected)
    assert_rejected(digits_server, lambda: infer(grpc, grpcclient, bad), *expected, "INVALID_ARGUMENT")


def test_batch_over_max_batch_size_is_rejected(http, digits_server, digits):
    too_many = np.concatenate([digits[0][:100], digits[0][:100]])  # 200 > max_batch_size 128
    assert_rejected(digits_server, lambda: infer(http, httpclient, too_many), "batch-size", "128")


def test_one_bad_request_does_not_fail_its_batch_neighbours(http, digits_server, digits):
    images, truth = digits
    good, bad = [], []
    for i in range(8):
        tensor = httpclient.InferInput("image", [4, 8, 8], "FP32")
        tensor.set_data_from_numpy(images[4 * i : 4 * i + 4])
        good.append((i, http.async_infer(MODEL, [tensor])))
        poisoned = images[:4].copy()
        poisoned[0, 0, 0] = 99.0
        tensor = httpclient.InferInput("image", [4, 8, 8], "FP32")
        tensor.set_data_from_numpy(poisoned)
        bad.append(http.async_infer(MODEL, [tensor]))
    for i, pending in good:
        labels = pending.get_result().as_numpy("label")[:, 0]
        assert (labels == truth[4 * i : 4 * i + 4]).sum() >= 3
    for pending in bad:
        with pytest.raises(InferenceServerException, match="'image'"):
            pending.get_result()
    assert digits_server.is_ready()


def test_served_config_is_python_backend_batched_and_on_the_right_device(http):
    import torch

    config = http.get_model_config(MODEL)
    assert config["backend"] == "python"
    assert config["max_batch_size"] >= 64
    assert "dynamic_batching" in config
    # KIND_AUTO resolves to KIND_CPU on a machine without GPUs, to KIND_GPU where Triton sees one.
    expected = "KIND_GPU" if torch.cuda.is_available() else "KIND_CPU"
    assert [group["kind"] for group in config["instance_group"]] == [expected]
