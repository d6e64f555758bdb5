"""`aifn run examples/digits.yaml` as a user starts it, and `aifn invoke` against it (real Triton)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from .conftest import TEST_MODELS, digits_request

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[3]


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aifunction_operator", "invoke", *args],
                          capture_output=True, text=True, timeout=180)


def test_invoke_the_example_function(run_function, tmp_path: Path) -> None:
    run = run_function(function_file=ROOT / "examples" / "digits.yaml")
    assert run.triton_pids() == []
    digits = load_digits()
    npy = tmp_path / "digits.npy"
    np.save(npy, digits.images[:5].astype(np.float32))

    by_file = invoke(str(ROOT / "examples" / "digits.yaml"), "--url", run.url, "-i", f"image={npy}", "-o", "json")
    assert by_file.returncode == 0, by_file.stderr
    outputs = json.loads(by_file.stdout)
    assert np.array(outputs["label"]["data"]).reshape(-1).tolist() == digits.target[:5].tolist()
    assert outputs["probabilities"]["shape"] == [5, 10]

    request = tmp_path / "request.json"
    request.write_bytes(digits_request(digits.images[5:7].tolist()))
    by_url = invoke(run.url, "--request", str(request))
    assert by_url.returncode == 0, by_url.stderr
    assert "label int64 [2, 1]" in by_url.stdout

    wrong_shape = invoke(run.url, "-i", "image=[[1, 2, 3]]")
    assert wrong_shape.returncode == 1 and "unexpected shape for input 'image'" in wrong_shape.stderr
    wrong_input = invoke(run.url, "-i", "pixels=[1]")
    assert wrong_input.returncode == 2 and "has inputs image" in wrong_input.stderr
    unknown = invoke(run.url, "--model", "nosuch", "-i", "image=[1]")
    assert unknown.returncode == 1 and "unknown model 'nosuch'" in unknown.stderr
    policy = run.status()["policy"]
    assert (policy["max_replicas"], policy["target_concurrency"], policy["container_concurrency"]) == (3, 4.0, 16)
    assert policy["scale_to_zero_after"] == 60.0  # default --idle-timeout 60s over scaleToZeroRetention 30s


def test_invoke_reports_an_unreachable_function() -> None:
    done = invoke("http://127.0.0.1:9", "--model", "digits", "-i", "image=[1]", "--timeout", "5")
    assert done.returncode == 1
    assert "http://127.0.0.1:9" in done.stderr


def test_invoke_refuses_values_that_do_not_fit_the_input(run_function, tmp_path: Path) -> None:
    """A real model with INT32, UINT8 and FP32 inputs (tests/serving/local/models/typed) that echoes what it gets."""
    run = run_function(model="typed", repository=TEST_MODELS)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    refused = {
        "i32=[3000000000]": "--input i32: 3000000000 does not fit INT32 (-2147483648..2147483647)",
        "i32=[1e40]": "--input i32: 1e+40 does not fit INT32",
        "u8=[-1]": "--input u8: -1 does not fit UINT8 (0..255)",
        "f32=[1e40]": "--input f32: 1e+40 does not fit FP32",
        f"i32=@{deep}": "nested too deeply",
    }
    for value, message in refused.items():
        done = invoke(run.url, "-i", value)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, (value[:40], done.stderr[-500:])
    fits = invoke(run.url, "-i", "i32=[2147483647,-2147483648]", "-i", "u8=[255]", "-i", "f32=[3e38]", "-o", "json")
    assert fits.returncode == 0, fits.stderr
    outputs = json.loads(fits.stdout)
    assert outputs["i32_out"]["data"] == [2147483647, -2147483648] and outputs["u8_out"]["data"] == [255]
    assert outputs["f32_out"]["data"] == [pytest.approx(3e38, rel=1e-6)]
