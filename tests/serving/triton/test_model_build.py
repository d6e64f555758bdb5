"""`make models` (model_repo/build.py) reproduces the committed digits model card.

No Triton needed; the --check test retrains the CNN with torch (about 15 s on one core).
Retrained weights are bit-identical only with the same torch build on the same kind of CPU, so
the check compares behaviour on the held-out digits, never digests; these tests must pass on
any CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODEL_REPO = Path(__file__).resolve().parents[3] / "model_repo"
ARTIFACT = MODEL_REPO / "digits" / "1" / "model.pt"

pytestmark = pytest.mark.slow


def test_metrics_describe_the_committed_artifact(digits_training):
    committed = json.loads((MODEL_REPO / "digits" / "metrics.json").read_text())
    assert committed["artifact_digest"] == digits_training.archive_digest(ARTIFACT), (
        "metrics.json and model.pt disagree: commit both from one `make models` run"
    )
    assert committed["accuracy_held_out"] >= 0.97
    assert committed["split"]["held_out_size"] == 360


def test_make_models_retrains_to_the_model_card():
    result = subprocess.run(
        [sys.executable, str(MODEL_REPO / "build.py"), "--check"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reproduces the model card" in result.stdout, result.stdout


def _perturbed_copy(source: Path, target: Path, scale: float, seed: int = 7) -> Path:
    """Save `source` with every weight moved by relative noise of `scale`.

    Stands in for training on another CPU, which we cannot cause here: small noise is what
    other kernels' rounding does; large noise is a model that no longer reproduces the card.
    """
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
        (1e-4, True),  # rounding-sized differences: other weights, same behaviour
        (3.0, False),  # a different model: accuracy and agreement collapse
    ],
)
def test_check_judges_behaviour_not_bytes(digits_training, tmp_path, scale, reproduces):
    committed = json.loads((MODEL_REPO / "digits" / "metrics.json").read_text())
    retrained = _perturbed_copy(ARTIFACT, tmp_path / "model.pt", scale)
    result = digits_training.compare(retrained, ARTIFACT, committed["accuracy_held_out"])
    assert not result.identical, "the perturbed copy must have other weights than the committed one"
    assert (result.problems == []) is reproduces, result
    if not reproduces:
        assert any("agree" in problem for problem in result.problems), result.problems


def test_check_compares_against_the_card_accuracy(digits_training):
    """The committed artifact compared with itself agrees fully; a card that claims more fails."""
    exact = digits_training.compare(ARTIFACT, ARTIFACT, 0.9889)
    assert exact.identical and exact.agreement == 1.0 and exact.problems == []
    inflated = digits_training.compare(ARTIFACT, ARTIFACT, 1.0 if exact.accuracy < 0.985 else exact.accuracy + 0.02)
    assert inflated.problems and "held-out accuracy" in inflated.problems[0]


def test_build_rejects_an_unknown_model_name():
    result = subprocess.run(
        [sys.executable, str(MODEL_REPO / "build.py"), "resnet"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown model(s) resnet" in result.stderr
