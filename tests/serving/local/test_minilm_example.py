"""`aifn run examples/minilm.yaml` (real Triton) answers `aifn invoke` with sentence embeddings:
the text scenario of the README's table, run as the table says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support.models import minilm_weights as build_minilm_weights

from .conftest import LocalRun

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(300)]

FUNCTION = Path(__file__).resolve().parents[3] / "examples" / "minilm.yaml"
TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]


@pytest.fixture(scope="module")
def minilm_weights() -> Path:
    """model_repo/minilm/1/weights, produced when missing (support.models)."""
    return build_minilm_weights()


def test_the_example_function_embeds_text(run_function, minilm_weights: Path) -> None:
    run: LocalRun = run_function(function_file=FUNCTION)
    done = subprocess.run(
        [sys.executable, "-m", "aifunction_operator", "invoke", str(FUNCTION), "--url", run.url,
         "-i", "text=" + json.dumps([[t] for t in TEXTS]), "-o", "json"],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr
    embedding = json.loads(done.stdout)["embedding"]
    assert embedding["shape"] == [3, 384]
    vectors = np.array(embedding["data"]).reshape(3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3, "a paraphrase is not closer than an unrelated sentence"
