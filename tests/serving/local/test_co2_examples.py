"""The forecasting examples under the real `aifn run` (real Triton): examples/co2.yaml through
`aifn invoke`, and examples/handlers/co2-forecast turning "the next N months" into model calls."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import MODEL_REPO, LocalRun

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[3]
FUNCTION = ROOT / "examples" / "co2.yaml"
HANDLER_FUNCTION = ROOT / "examples" / "handlers" / "co2-forecast" / "co2-forecast.yaml"
ARTIFACT = MODEL_REPO / "co2" / "1" / "model.pt"
TOLERANCE = 1e-3  # ppm; the handler rounds to 3 decimals


@pytest.fixture(scope="module")
def co2_training():  # -> module
    """model_repo/co2_training.py (imported without writing bytecode into the model repository)."""
    sys.dont_write_bytecode = True
    if str(MODEL_REPO) not in sys.path:
        sys.path.insert(0, str(MODEL_REPO))
    return importlib.import_module("co2_training")


@pytest.fixture(scope="module")
def series(co2_training):  # -> co2_training.CO2Series
    return co2_training.co2_series()


def iterate(co2_training, history: np.ndarray, steps: int) -> np.ndarray:
    """What the handler should answer: the model fed its own forecasts past 12 months."""
    window, out = history[-36:].astype(np.float32), []
    while len(out) < steps:
        ahead = co2_training.predict(ARTIFACT, window.reshape(1, 36))[0]
        out.extend(ahead)
        window = np.concatenate([window, ahead])[-36:]
    return np.asarray(out[:steps])


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aifunction_operator", "invoke", *args],
                          capture_output=True, text=True, timeout=180)


def test_the_example_function_forecasts_through_aifn_invoke(run_function, co2_training, series, tmp_path: Path) -> None:
    run: LocalRun = run_function(function_file=FUNCTION)
    contexts, _ = series.windows(series.held_out_origins)
    npy = tmp_path / "history.npy"
    np.save(npy, contexts[:3])
    done = invoke(str(FUNCTION), "--url", run.url, "-i", f"history={npy}", "-o", "json")
    assert done.returncode == 0, done.stderr
    forecast = json.loads(done.stdout)["forecast"]
    assert forecast["shape"] == [3, 12]
    np.testing.assert_allclose(np.array(forecast["data"]).reshape(3, 12), co2_training.predict(ARTIFACT, contexts[:3]), atol=TOLERANCE)
    short = invoke(run.url, "--model", "co2", "-i", "history=[[350.0, 351.0]]")
    assert short.returncode == 1 and "unexpected shape for input 'history'" in short.stderr, short.stderr


def test_the_handlers_shipped_tail_is_the_series_end(series) -> None:
    spec = importlib.util.spec_from_file_location("_co2_forecast_example", HANDLER_FUNCTION.parent / "forecast.py")
    assert spec is not None and spec.loader is not None
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    np.testing.assert_array_equal(np.asarray(handler.SHIPPED_TAIL, dtype=np.float32), series.values[-36:])
    assert series.months[-1] == "{:04d}-{:02d}".format(*handler.SHIPPED_LAST_MONTH)


JSON, TEXT = "application/json", "text/plain"
BAD_REQUESTS = [
    # (body, content type, the field the error must name first); the runtime itself answers a body
    # declared JSON that strict JSON does not parse (NaN included); other content types reach the handler
    (b'{"steps": ', JSON, "request body: Content-Type is application/json but the body is not valid JSON"),
    (b'{"steps": ', TEXT, "body: must be JSON"),
    (b"[12]", JSON, "body: must be a JSON object"),
    (b"{}", JSON, "steps: required"),
    (b'{"steps": 0}', JSON, "steps: must be an integer from 1 to 120"),
    (b'{"steps": 121}', JSON, "steps: must be an integer from 1 to 120"),
    (b'{"steps": 1.5}', JSON, "steps: must be an integer"),
    (b'{"steps": "12"}', JSON, "steps: must be an integer"),
    (b'{"steps": true}', JSON, "steps: must be an integer"),
    (b'{"steps": 12, "history": "370,371"}', JSON, "history: must be a list"),
    (b'{"steps": 12, "history": [370.0, 371.0]}', JSON, "history: needs 36 to 10000 monthly values"),
    (json.dumps({"steps": 12, "history": [370.0] * 35 + ["x"]}).encode(), JSON, "history[35]: must be a finite number"),
    (json.dumps({"steps": 12, "history": [370.0] * 35 + [None]}).encode(), JSON, "history[35]: must be a finite number"),
    (b'{"steps": 12, "history": [' + b"370.0, " * 35 + b"NaN]}", TEXT, "history[35]: must be a finite number"),
    (b'{"step": 12}', JSON, "step: unknown field"),
]


def test_the_forecast_handler_through_aifn_run(run_function, co2_training, series) -> None:
    run: LocalRun = run_function(function_file=HANDLER_FUNCTION)
    shipped = series.values[-36:]

    year = run.post("/", b'{"steps": 12}')  # the first request starts Triton
    assert year.status == 200, year.body
    answer = year.json()
    assert (answer["steps"], answer["history"], answer["unit"], answer["modelCalls"]) == (12, "shipped", "ppm", 1)
    assert answer["months"][0] == "2002-01" and answer["months"][-1] == "2002-12"
    np.testing.assert_allclose(answer["forecast"], iterate(co2_training, shipped, 12), atol=TOLERANCE)

    decade = run.post("/", b'{"steps": 120}').json()  # past the model's 12: fed its own forecasts
    assert decade["modelCalls"] == 10 and len(decade["forecast"]) == 120 and decade["months"][-1] == "2011-12"
    np.testing.assert_allclose(decade["forecast"], iterate(co2_training, shipped, 120), atol=TOLERANCE)
    assert decade["forecast"][:12] == answer["forecast"]
    assert np.mean(decade["forecast"][-12:]) > np.mean(answer["forecast"]) + 5, "ten years of trend went missing"

    contexts, targets = series.windows(series.held_out_origins)
    given = run.post("/", json.dumps({"steps": 5, "history": series.values[: series.first_held_out].tolist()}).encode())
    assert given.status == 200, given.body
    assert given.json()["history"] == "given" and "months" not in given.json()
    np.testing.assert_allclose(given.json()["forecast"], co2_training.predict(ARTIFACT, contexts[:1])[0, :5], atol=TOLERANCE)
    assert np.abs(np.array(given.json()["forecast"]) - targets[0, :5]).max() < 1.5, "forecast of 1992 far from the data"

    for body, content_type, field in BAD_REQUESTS:
        bad = run.post("/", body, {"Content-Type": content_type})
        assert bad.status == 400, (body, bad.status, bad.body)
        assert bad.json()["error"].startswith(field), (body, bad.json())
    assert run.post("/", b'{"steps": 1}').status == 200, "the function stopped serving after bad requests"
