"""`make models` (model_repo/build.py) reproduces the committed digits artifact and its figures.

No Triton needed; the --check test retrains the CNN with torch (about 15 s on one core).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODEL_REPO = Path(__file__).resolve().parents[2] / "model_repo"
ARTIFACT = MODEL_REPO / "digits" / "1" / "model.pt"

pytestmark = pytest.mark.slow


def test_metrics_describe_the_committed_artifact(digits_training):
    committed = json.loads((MODEL_REPO / "digits" / "metrics.json").read_text())
    assert committed["artifact_digest"] == digits_training.archive_digest(ARTIFACT), (
        "metrics.json and model.pt disagree: commit both from one `make models` run"
    )
    assert committed["accuracy_held_out"] >= 0.97
    assert committed["split"]["held_out_size"] == 360


def test_make_models_retrains_to_the_committed_artifact():
    result = subprocess.run(
        [sys.executable, str(MODEL_REPO / "build.py"), "--check"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical" in result.stdout


def test_build_rejects_an_unknown_model_name():
    result = subprocess.run(
        [sys.executable, str(MODEL_REPO / "build.py"), "resnet"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown model(s) resnet" in result.stderr
