"""Train and export the co2 forecaster: a small torch network on statsmodels' bundled Mauna Loa CO2.

Data: `statsmodels.datasets.co2` (weekly ppm, March 1958 to December 2001, shipped inside the
package), averaged to 526 calendar months; the 5 months without any reading are filled by
linear interpolation. Split by time: the network trains on windows whose targets all lie in
1958-03..1991-12; every figure in the card is measured on forecasts of 1992-01..2001-12 (120
months it never saw as targets), from every origin whose 12 targets lie in that span.

The exported TorchScript takes the last CONTEXT monthly values (ppm, FP32 [batch, 36]) and
returns the next HORIZON months (ppm, FP32 [batch, 12]). It works on the window relative to its
last value (so a level it never saw shifts the forecast, not its shape); the scaling happens
inside the model.

Deterministic like digits_training: fixed seed, deterministic algorithms, one thread, full-batch
training. Imported as `co2_training` by build.py and by the tests (the TorchScript class names
derive from this module name, so it must not change).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SEED = 20240601
CONTEXT = 36  # months the model reads
HORIZON = 12  # months it forecasts in one call
SEASON = 12  # the seasonal-naive baseline repeats the last observed year
HELD_OUT_MONTHS = 120  # 1992-01 .. 2001-12
HIDDEN = 32
STEPS = 1500  # full-batch Adam steps
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
PPM_SCALE = 5.0  # ppm per unit inside the network

# What `build.py --check` demands of a retrained model (training is deterministic per torch build
# and CPU, not across CPUs; see digits_training): the card's held-out MAE within MAE_TOLERANCE,
# and forecasts within MAX_MEAN_DIFFERENCE ppm (mean absolute) of the committed model's.
MAE_TOLERANCE = 0.03  # ppm
MAX_MEAN_DIFFERENCE = 0.05  # ppm

warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=FutureWarning)


@dataclass(frozen=True)
class CO2Series:
    """Monthly mean CO2 (ppm) with the index of the first held-out month."""

    values: np.ndarray  # (526,) float32
    months: list[str]  # "YYYY-MM" for each value
    first_held_out: int

    def windows(self, origins: range) -> tuple[np.ndarray, np.ndarray]:
        """(contexts [n, CONTEXT], targets [n, HORIZON]); an origin is the index of the first target."""
        contexts = np.stack([self.values[t - CONTEXT : t] for t in origins])
        targets = np.stack([self.values[t : t + HORIZON] for t in origins])
        return contexts, targets

    @property
    def train_origins(self) -> range:
        """Origins whose targets all lie before the held-out span."""
        return range(CONTEXT, self.first_held_out - HORIZON + 1)

    @property
    def held_out_origins(self) -> range:
        """Origins whose targets all lie in the held-out span (each held-out month is a target)."""
        return range(self.first_held_out, len(self.values) - HORIZON + 1)


def co2_series() -> CO2Series:
    """statsmodels' weekly CO2 as calendar months, with the chronological split."""
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate(method="time")
    return CO2Series(
        values=monthly.to_numpy(dtype=np.float32),
        months=[stamp.strftime("%Y-%m") for stamp in monthly.index],
        first_held_out=len(monthly) - HELD_OUT_MONTHS,
    )


class CO2Forecaster(nn.Module):
    """The last 36 monthly values (ppm) -> the next 12 (ppm): a linear map plus a small MLP on the
    window relative to its last value."""

    def __init__(self) -> None:
        super().__init__()
        self.ppm_scale: float = PPM_SCALE
        self.linear = nn.Linear(CONTEXT, HORIZON)
        self.nonlinear = nn.Sequential(nn.Linear(CONTEXT, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HORIZON))

    def relative(self, history: torch.Tensor) -> torch.Tensor:
        """Forecast as scaled differences from the window's last value."""
        x = (history - history[:, -1:]) / self.ppm_scale
        return self.linear(x) + self.nonlinear(x)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return history[:, -1:] + self.relative(history) * self.ppm_scale


def train(series: CO2Series) -> CO2Forecaster:
    """Train on the training windows only; returns the model in eval mode."""
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    contexts, targets = series.windows(series.train_origins)
    x = torch.from_numpy(contexts)
    y = (torch.from_numpy(targets) - x[:, -1:]) / PPM_SCALE
    model = CO2Forecaster()
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=STEPS)
    loss_fn = nn.MSELoss()
    model.train()
    for _ in range(STEPS):
        optimiser.zero_grad()
        loss_fn(model.relative(x), y).backward()
        optimiser.step()
        scheduler.step()
    return model.eval()


def seasonal_naive(contexts: np.ndarray) -> np.ndarray:
    """The baseline: each of the next 12 months repeats the same month of the last observed year."""
    return contexts[:, -SEASON:][:, np.arange(HORIZON) % SEASON]


def seasonal_naive_drift(contexts: np.ndarray) -> np.ndarray:
    """A harder baseline: seasonal naive plus the last year's growth (mean of the last 12 months
    minus the mean of the 12 before)."""
    growth = contexts[:, -SEASON:].mean(axis=1) - contexts[:, -2 * SEASON : -SEASON].mean(axis=1)
    return seasonal_naive(contexts) + growth[:, None]


def errors(forecasts: np.ndarray, targets: np.ndarray, scale: float) -> dict[str, float]:
    """MAE, RMSE (ppm) and MASE (MAE over the training set's in-sample seasonal-naive MAE)."""
    difference = forecasts.astype(np.float64) - targets
    mae = float(np.abs(difference).mean())
    return {
        "mae": round(mae, 4),
        "rmse": round(float(np.sqrt((difference**2).mean())), 4),
        "mase": round(mae / scale, 4),
    }


def mase_scale(series: CO2Series) -> float:
    """Mean |y[t] - y[t-12]| over the training months (the MASE denominator)."""
    train = series.values[: series.first_held_out].astype(np.float64)
    return float(np.abs(train[SEASON:] - train[:-SEASON]).mean())


def archive_digest(artifact: Path) -> str:
    """SHA-256 over a TorchScript archive's weights (names, shapes, values) and its ppm scale.

    Not over the archive's records, as digits' digest is: TorchScript renames (mangles) a module
    class it has already compiled once in the process, so the same weights scripted after another
    model (`make models` trains digits first) give other records.
    """
    model = torch.jit.load(str(artifact))
    digest = hashlib.sha256(repr(model.ppm_scale).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{list(tensor.shape)}:{tensor.dtype}\0".encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


def predict(artifact: Path, contexts: np.ndarray) -> np.ndarray:
    """Forecasts [n, 12] from a TorchScript artifact for contexts [n, 36] (ppm)."""
    model = torch.jit.load(str(artifact))
    with torch.no_grad():
        return model(torch.from_numpy(contexts)).numpy()


@dataclass(frozen=True)
class Reproduction:
    """How a retrained artifact compares with the committed one on the held-out forecasts."""

    mae: float  # the retrained model's held-out MAE (ppm)
    card_mae: float  # the committed card's figure
    baseline_mae: float  # seasonal naive on the same forecasts
    mean_difference: float  # mean |retrained - committed| over all held-out forecasts (ppm)
    identical: bool  # same archive digest (only expected with the same torch build and CPU)

    @property
    def problems(self) -> list[str]:
        """Why the retrained model does not reproduce the card; empty when it does."""
        found = []
        if abs(self.mae - self.card_mae) > MAE_TOLERANCE:
            found.append(f"held-out MAE {self.mae:.4f} ppm is more than {MAE_TOLERANCE} from the card's {self.card_mae:.4f}")
        if self.mae >= self.baseline_mae:
            found.append(f"held-out MAE {self.mae:.4f} ppm does not beat the seasonal-naive {self.baseline_mae:.4f}")
        if self.mean_difference > MAX_MEAN_DIFFERENCE:
            found.append(
                f"the retrained and committed forecasts differ by {self.mean_difference:.4f} ppm on average, "
                f"above {MAX_MEAN_DIFFERENCE}"
            )
        return found


def compare(retrained: Path, committed: Path, card_mae: float, series: CO2Series | None = None) -> Reproduction:
    """Compare two artifacts' held-out forecasts (what must reproduce on any CPU)."""
    series = series or co2_series()
    contexts, targets = series.windows(series.held_out_origins)
    fresh, kept = predict(retrained, contexts), predict(committed, contexts)
    scale = mase_scale(series)
    return Reproduction(
        mae=errors(fresh, targets, scale)["mae"],
        card_mae=card_mae,
        baseline_mae=errors(seasonal_naive(contexts), targets, scale)["mae"],
        mean_difference=float(np.abs(fresh - kept).mean()),
        identical=archive_digest(retrained) == archive_digest(committed),
    )


def export(artifact: Path) -> dict[str, Any]:
    """Train, save TorchScript to `artifact`, reload it, and return the measured figures."""
    import statsmodels

    series = co2_series()
    model = train(series)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(model).save(str(artifact))
    contexts, targets = series.windows(series.held_out_origins)
    forecasts = predict(artifact, contexts)
    scale = mase_scale(series)
    by_step = np.abs(forecasts.astype(np.float64) - targets).mean(axis=0)
    return {
        "dataset": f"statsmodels.datasets.co2 (statsmodels {statsmodels.__version__}): weekly Mauna Loa CO2 (ppm), "
        f"as {len(series.values)} monthly means {series.months[0]}..{series.months[-1]}, gaps interpolated",
        "split": {
            "method": "chronological",
            "train_months": f"{series.months[0]}..{series.months[series.first_held_out - 1]}",
            "held_out_months": f"{series.months[series.first_held_out]}..{series.months[-1]}",
            "train_windows": len(series.train_origins),
            "held_out_forecasts": len(series.held_out_origins),
            "context": CONTEXT,
            "horizon": HORIZON,
        },
        "training": {
            "steps": STEPS,
            "optimizer": f"Adam lr={LEARNING_RATE} weight_decay={WEIGHT_DECAY}, full batch, cosine schedule",
            "seed": SEED,
            "torch": torch.__version__,
        },
        "mase_scale_ppm": round(scale, 4),
        "held_out": {
            "model": errors(forecasts, targets, scale),
            "seasonal_naive": errors(seasonal_naive(contexts), targets, scale),
            "seasonal_naive_drift": errors(seasonal_naive_drift(contexts), targets, scale),
        },
        "model_mae_by_step": [round(float(v), 4) for v in by_step],
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "artifact_bytes": artifact.stat().st_size,
        "artifact_digest": archive_digest(artifact),
    }
