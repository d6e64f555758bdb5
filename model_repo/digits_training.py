"""Train and export the digits classifier: a small CNN on scikit-learn's bundled `load_digits`.

Deterministic: fixed seed, `torch.use_deterministic_algorithms(True)`, one thread, a fixed
stratified held-out split. The exported TorchScript takes raw load_digits pixels (0..16,
shape [batch, 8, 8], float32) and returns class probabilities [batch, 10]; the scaling to
0..1 happens inside the model.

Imported as `digits_training` by build.py and by the tests (the TorchScript class names
derive from this module name, so it must not change).
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SEED = 20240601
TEST_FRACTION = 0.2
EPOCHS = 40
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
PIXEL_MAX = 16.0
# The archive records that hold the model: module structure (data.pkl), tensors (data/N),
# constants. Left out of the digest: the random id torch.jit.save writes into every archive
# and the generated code/, whose order of constants follows Python's per-process hash seed.
MODEL_RECORD_PREFIXES = ("data.pkl", "data/", "constants.pkl", "version", "byteorder")

# What `build.py --check` demands of a retrained model. Training is deterministic per torch
# build and CPU, not across CPUs: kernels chosen for the CPU (AVX2, AVX-512, AMX, BF16/FP16
# paths) round differently, so the weights, and the archive digest, may differ elsewhere.
# What must reproduce everywhere is the model's behaviour on the held-out digits:
ACCURACY_TOLERANCE = 0.015  # held-out accuracy within 1.5 points (about 5 of 360 digits) of the card
MIN_AGREEMENT = 0.98  # the retrained and committed models predict the same digit for >= 98% of held-out

# torch 2.9+ marks TorchScript deprecated; it remains what Triton's torch builds load.
warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=FutureWarning)


@dataclass(frozen=True)
class DigitsSplit:
    """load_digits with a training / held-out split (index arrays into the full set)."""

    images: np.ndarray  # (1797, 8, 8) float32, raw 0..16
    labels: np.ndarray  # (1797,) int64
    train_idx: np.ndarray
    test_idx: np.ndarray


def digits_split() -> DigitsSplit:
    """The fixed, stratified train / held-out split every figure in the model card uses."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.float32)
    labels = data.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=SEED, stratify=labels
    )
    return DigitsSplit(images, labels, np.sort(train_idx), np.sort(test_idx))


class DigitsCNN(nn.Module):
    """8x8 grey digit (raw 0..16) -> probabilities over the classes 0..9."""

    def __init__(self) -> None:
        super().__init__()
        self.pixel_scale: float = 1.0 / PIXEL_MAX
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 32 x 4 x 4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised class scores; images are raw 0..16 pixels, scaled here."""
        x = (images * self.pixel_scale).unsqueeze(1)
        return self.classifier(self.features(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(images), dim=1)


def train(split: DigitsSplit) -> DigitsCNN:
    """Train on the training indices only; returns the model in eval mode."""
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    model = DigitsCNN()
    x = torch.from_numpy(split.images[split.train_idx])
    y = torch.from_numpy(split.labels[split.train_idx])
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=EPOCHS)
    loss_fn = nn.CrossEntropyLoss()
    order_rng = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(y), generator=order_rng)
        for start in range(0, len(y), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            optimiser.zero_grad()
            loss_fn(model.logits(x[batch]), y[batch]).backward()
            optimiser.step()
        scheduler.step()
    return model.eval()


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float((probabilities.argmax(axis=1) == labels).mean())


def archive_digest(artifact: Path) -> str:
    """SHA-256 over a TorchScript archive's model records (structure, weights, constants)."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(artifact) as archive:
        for name in sorted(archive.namelist()):
            record = name.split("/", 1)[-1]
            if record.startswith(MODEL_RECORD_PREFIXES):
                digest.update(record.encode() + b"\0" + archive.read(name))
    return digest.hexdigest()


@dataclass(frozen=True)
class Reproduction:
    """How a retrained artifact compares with the committed one on the held-out digits."""

    accuracy: float  # the retrained model's held-out accuracy
    card_accuracy: float  # the committed model card's figure
    agreement: float  # fraction of held-out digits both models label the same
    identical: bool  # same archive digest (only expected with the same torch build and CPU)

    @property
    def problems(self) -> list[str]:
        """Why the retrained model does not reproduce the card; empty when it does."""
        found = []
        if abs(self.accuracy - self.card_accuracy) > ACCURACY_TOLERANCE:
            found.append(
                f"held-out accuracy {self.accuracy:.4f} is more than {ACCURACY_TOLERANCE} "
                f"from the card's {self.card_accuracy:.4f}"
            )
        if self.agreement < MIN_AGREEMENT:
            found.append(
                f"the retrained and committed models agree on {self.agreement:.4f} of held-out digits, "
                f"below {MIN_AGREEMENT}"
            )
        return found


def predict(artifact: Path, images: np.ndarray) -> np.ndarray:
    """Probabilities from a TorchScript artifact for raw 0..16 images [n, 8, 8]."""
    model = torch.jit.load(str(artifact))
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def compare(retrained: Path, committed: Path, card_accuracy: float, split: DigitsSplit | None = None) -> Reproduction:
    """Compare two artifacts' behaviour on the held-out digits (what must reproduce on any CPU)."""
    split = split or digits_split()
    images, labels = split.images[split.test_idx], split.labels[split.test_idx]
    fresh = predict(retrained, images)
    kept = predict(committed, images)
    return Reproduction(
        accuracy=round(accuracy(fresh, labels), 4),
        card_accuracy=card_accuracy,
        agreement=float((fresh.argmax(axis=1) == kept.argmax(axis=1)).mean()),
        identical=archive_digest(retrained) == archive_digest(committed),
    )


def export(artifact: Path) -> dict[str, Any]:
    """Train, save TorchScript to `artifact`, reload it, and return the measured figures."""
    split = digits_split()
    model = train(split)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(model).save(str(artifact))
    reloaded = torch.jit.load(str(artifact))
    with torch.no_grad():
        probs = reloaded(torch.from_numpy(split.images)).numpy()
    return {
        "dataset": "sklearn.datasets.load_digits (1,797 8x8 images, pixel values 0-16)",
        "split": {
            "method": "sklearn.model_selection.train_test_split, stratified",
            "test_fraction": TEST_FRACTION,
            "random_state": SEED,
            "train_size": int(len(split.train_idx)),
            "held_out_size": int(len(split.test_idx)),
        },
        "training": {
            "epochs": EPOCHS,
            "batch_size": BATCH_SIZE,
            "optimizer": f"Adam lr={LEARNING_RATE}, cosine schedule",
            "seed": SEED,
            "torch": torch.__version__,
        },
        "accuracy_held_out": round(accuracy(probs[split.test_idx], split.labels[split.test_idx]), 4),
        "accuracy_train": round(accuracy(probs[split.train_idx], split.labels[split.train_idx]), 4),
        "accuracy_all_1797": round(accuracy(probs, split.labels), 4),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "artifact_bytes": artifact.stat().st_size,
        "artifact_digest": archive_digest(artifact),
    }
