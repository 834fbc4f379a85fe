"""Quality metrics over a whole evaluation set.

Predictions are accumulated per image (crops already averaged) with the image's index; under several
processes torchmetrics gathers every rank's states and `compute` de-duplicates by index, so images a
distributed sampler repeated to pad its shards are counted once.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import curve_fit
from torchmetrics import Metric
from torchmetrics.functional import (
    kendall_rank_corrcoef,
    mean_squared_error,
    pearson_corrcoef,
    spearman_corrcoef,
)
from torchmetrics.utilities import dim_zero_cat


def correlation_metrics(preds: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    preds, target = preds.double().flatten(), target.double().flatten()
    return {
        "srcc": float(spearman_corrcoef(preds, target)),
        "plcc": float(pearson_corrcoef(preds, target)),
        "krcc": float(kendall_rank_corrcoef(preds, target)),
        "rmse": float(mean_squared_error(preds, target, squared=False)),
    }


def logistic_4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic of the VQEG protocol, monotonic from b2 to b1 around b3 with slope b4."""
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def fitted_plcc(preds: torch.Tensor, target: torch.Tensor) -> float:
    """PLCC after fitting the 4-parameter logistic from predictions to scores (cross-dataset reporting)."""
    x, y = preds.double().cpu().numpy(), target.double().cpu().numpy()
    start = [y.max(), y.min(), float(np.mean(x)), float(np.std(x)) or 1.0]
    try:
        params, _ = curve_fit(logistic_4, x, y, p0=start, maxfev=20000)
    except (RuntimeError, TypeError):  # no convergence, or fewer images than the 4 parameters
        return float(np.corrcoef(x, y)[0, 1])
    return float(np.corrcoef(logistic_4(x, *params), y)[0, 1])


class QualityMetrics(Metric):
    """SRCC, PLCC, KRCC and RMSE over every image seen, de-duplicated by image index."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, index: torch.Tensor) -> None:
        self.preds.append(preds.detach().float().flatten())
        self.target.append(target.detach().float().flatten())
        self.index.append(index.detach().long().flatten())

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predictions, targets and indices, one entry per distinct image, sorted by index."""
        preds, target, index = (dim_zero_cat(s) for s in (self.preds, self.target, self.index))
        unique, first = _first_occurrence(index)
        return preds[first], target[first], unique

    def compute(self) -> dict[str, torch.Tensor]:
        preds, target, _ = self.gathered()
        if preds.numel() < 3:
            raise ValueError(
                f"quality metrics need at least 3 distinct images, got {preds.numel()}: "
                "enlarge the evaluation split"
            )
        return {k: torch.tensor(v) for k, v in correlation_metrics(preds, target).items()}


def _first_occurrence(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    unique, inverse = torch.unique(index, sorted=True, return_inverse=True)
    positions = torch.arange(index.numel(), device=index.device)
    first = torch.full_like(unique, index.numel()).scatter_reduce(0, inverse, positions, reduce="amin")
    return unique, first
