"""`make models` (model_repo/build.py) reproduces the committed digits artifact and its figures.

No Triton needed: these retrain the CNN with torch (about 15 s on one core).
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


def test_retraining_reproduces_the_committed_artifact_and_metrics(digits_training, tmp_path: Path):
    metrics = digits_training.export(tmp_path / "model.pt")
    committed = json.loads((MODEL_REPO / "digits" / "metrics.json").read_text())
    assert metrics["artifact_digest"] == digits_training.archive_digest(ARTIFACT), (
        "retraining gave different weights than the committed model.pt; run `make models` and commit"
    )
    for key in ("accuracy_held_out", "accuracy_all_1797", "accuracy_train", "parameters", "artifact_digest"):
        assert metrics[key] == committed[key], key
    assert metrics["accuracy_held_out"] >= 0.97


def test_build_check_command(tmp_path: Path):
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
