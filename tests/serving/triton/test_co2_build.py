"""`make models` (model_repo/build.py) reproduces the committed co2 model card, which beats the
seasonal-naive baseline.

No Triton needed; the --check test retrains the forecaster with torch (about 10 s on one core).
Retrained weights are bit-identical only with the same torch build on the same kind of CPU, so
the check compares behaviour on the held-out forecasts, never digests; these tests must pass on
any CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MODEL_REPO = Path(__file__).resolve().parents[3] / "model_repo"
ARTIFACT = MODEL_REPO / "co2" / "1" / "model.pt"
CARD = json.loads((MODEL_REPO / "co2" / "metrics.json").read_text())

pytestmark = pytest.mark.slow


def test_metrics_describe_the_committed_artifact(co2_training):
    assert CARD["artifact_digest"] == co2_training.archive_digest(ARTIFACT), (
        "metrics.json and model.pt disagree: commit both from one `make models` run"
    )
    assert CARD["split"] == {
        "method": "chronological", "train_months": "1958-03..1991-12", "held_out_months": "1992-01..2001-12",
        "train_windows": 359, "held_out_forecasts": 109, "context": 36, "horizon": 12,
    }


def test_the_card_beats_the_seasonal_naive_baseline():
    model, naive = CARD["held_out"]["model"], CARD["held_out"]["seasonal_naive"]
    for figure in ("mae", "rmse", "mase"):
        assert model[figure] < naive[figure], (figure, model, naive)
    assert model["mase"] < 1.0, "worse than the in-sample seasonal-naive error"


def test_the_split_is_chronological_and_every_held_out_month_is_forecast(co2_training):
    series = co2_training.co2_series()
    assert len(series.values) == 526 and np.isfinite(series.values).all()
    train_targets = series.train_origins[-1] + co2_training.HORIZON
    assert train_targets == series.first_held_out, "a training target lies in the held-out months"
    covered = {t + h for t in series.held_out_origins for h in range(co2_training.HORIZON)}
    assert covered == set(range(series.first_held_out, len(series.values)))


def test_the_baseline_repeats_the_last_observed_year(co2_training):
    contexts = np.arange(72, dtype=np.float32).reshape(2, 36)
    np.testing.assert_array_equal(co2_training.seasonal_naive(contexts), contexts[:, 24:])


def test_make_models_retrains_to_the_model_card():
    result = subprocess.run(
        [sys.executable, str(MODEL_REPO / "build.py"), "--check", "co2"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "co2: reproduces the model card" in result.stdout, result.stdout
    assert "digits" not in result.stdout, "--check co2 retrained digits too"


def _perturbed_copy(source: Path, target: Path, scale: float, seed: int = 7) -> Path:
    """Save `source` with every weight moved by relative noise of `scale` (stands in for another
    CPU's rounding when small, for a different model when large)."""
    import torch

    model = torch.jit.load(str(source))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale * parameter.abs().mean())
    torch.jit.save(model, str(target))
    return target


@pytest.mark.parametrize(
    ("scale", "reproduces"),
    [
        (1e-4, True),  # rounding-sized differences: other weights, same forecasts
        (0.5, False),  # a different model: the forecasts and their error move
    ],
)
def test_check_judges_behaviour_not_bytes(co2_training, tmp_path, scale, reproduces):
    retrained = _perturbed_copy(ARTIFACT, tmp_path / "model.pt", scale)
    result = co2_training.compare(retrained, ARTIFACT, CARD["held_out"]["model"]["mae"])
    assert not result.identical, "the perturbed copy must have other weights than the committed one"
    assert (result.problems == []) is reproduces, result


@pytest.mark.parametrize(
    ("card_mae", "problem"),
    [
        (None, None),  # the card's own figure
        (0.2, "more than"),  # a card that claims a better model than the artifact is
    ],
)
def test_check_compares_against_the_card_error(co2_training, card_mae, problem):
    result = co2_training.compare(ARTIFACT, ARTIFACT, card_mae if card_mae is not None else CARD["held_out"]["model"]["mae"])
    assert result.identical and result.mean_difference == 0.0
    assert result.baseline_mae == CARD["held_out"]["seasonal_naive"]["mae"]
    if problem is None:
        assert result.problems == []
    else:
        assert problem in result.problems[0], result.problems
