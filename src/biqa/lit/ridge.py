"""Closed-form training for probes (biqa.models.probe): one pass over the training crops collects the
features, then ridge regression (a linear head) or kernel ridge regression (an RBF-kernel head) is solved for
every penalty in `alphas` (and, for the kernel, every width in `gammas`), and the validation part picks the
solution with the best SRCC, as it picks a decoder's checkpoint. A probe with a head per backbone
(model.net.combine=mean) fits and picks each head on its own statistics, as if alone. Evaluation, metrics,
predictions and checkpoints are the regression module's, so a probe is a row of any study like a decoder.
Under DDP every rank collects its shard's features and statistics; all ranks solve on all of them, gathered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from biqa.lit.losses import Batch, LossTerm
from biqa.lit.optim import OptimConfig
from biqa.lit.regression import QualityRegressor
from biqa.metrics import correlation_metrics
from biqa.models.blocks.heads import RBFKernelHead
from biqa.models.probe import StageStatisticsProbe

DEFAULT_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
DEFAULT_GAMMAS = (0.25, 0.5, 1.0, 2.0)


class RidgeSolutions:
    """Ridge regression on standardized features z, one solution per penalty: weights (d, A)."""

    def __init__(self, z: torch.Tensor, y: torch.Tensor, alphas: Sequence[float]) -> None:
        gram, moment = z.T @ z, z.T @ (y - y.mean())
        eye = torch.eye(gram.shape[0], dtype=gram.dtype)
        self.weights = torch.stack([torch.linalg.solve(gram + a * eye, moment) for a in alphas], dim=1)
        self.intercept = float(y.mean())  # the training crops' mean score, the same for every penalty
        self.settings = [{"alpha": a} for a in alphas]

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weights.to(z.device) + self.intercept

    def install(self, head: nn.Module, index: int) -> None:
        head.weight.copy_(self.weights[:, index].view(1, -1).float())
        head.bias.fill_(self.intercept)


class KernelRidgeSolutions:
    """Kernel ridge regression with k(a, b) = exp(-gamma / d ||a - b||^2) on standardized features z (d of
    them), one solution per (gamma, alpha): one eigendecomposition of the kernel per gamma serves every
    penalty. The anchors are z rounded to float16, as RBFKernelHead stores them."""

    def __init__(self, z: torch.Tensor, y: torch.Tensor, gammas: Sequence[float], alphas: Sequence[float]) -> None:
        self.anchors = z.half().double()
        self.intercept = float(y.mean())
        squared = torch.cdist(self.anchors, self.anchors).square()
        self.gammas = [g / z.shape[1] for g in gammas]
        self.duals, self.settings = [], []
        for g, gamma in zip(gammas, self.gammas, strict=True):
            values, vectors = torch.linalg.eigh(torch.exp(-gamma * squared))
            projected = vectors.T @ (y - self.intercept)
            for a in alphas:
                self.duals.append((gamma, vectors @ (projected / (values + a))))
                self.settings.append({"gamma": g, "alpha": a})

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        squared = torch.cdist(z, self.anchors.to(z.device)).square()
        kernels = {gamma: torch.exp(-gamma * squared) for gamma in self.gammas}
        return torch.stack([kernels[gamma] @ dual.to(z.device) for gamma, dual in self.duals], dim=1) + self.intercept

    def install(self, head: nn.Module, index: int) -> None:
        gamma, dual = self.duals[index]
        head.set_solution(self.anchors, dual, gamma, self.intercept)


Fit = tuple[RidgeSolutions | KernelRidgeSolutions, torch.Tensor, torch.Tensor]
"""A head's candidate solutions, with the mean and scale that z-score its features."""


class RidgeProbeRegressor(QualityRegressor):
    uses_optimizer = False

    def __init__(
        self,
        net: StageStatisticsProbe,
        losses: Mapping[str, LossTerm],
        optim: OptimConfig | Mapping[str, Any] | None = None,
        run_config: DictConfig | dict | None = None,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        gammas: Sequence[float] = DEFAULT_GAMMAS,
    ) -> None:
        super().__init__(net, losses, optim=optim, run_config=run_config)
        if not isinstance(net, StageStatisticsProbe):
            raise ValueError(f"ridge fitting needs a biqa.models.probe.StageStatisticsProbe, not {type(net).__name__}")
        if not alphas or any(a <= 0 for a in alphas):
            raise ValueError(f"model.module.alphas must be positive penalties, got {list(alphas)}")
        if not gammas or any(g <= 0 for g in gammas):
            raise ValueError(f"model.module.gammas must be positive kernel widths (times 1 / feature count), "
                             f"got {list(gammas)}")
        self.alphas = [float(a) for a in alphas]
        self.gammas = [float(g) for g in gammas]
        self._train: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._candidates: list[Fit] | None = None
        self._val: list[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]] = []

    def configure_optimizers(self):
        return None

    def crop_statistics(self, batch: Batch) -> tuple[torch.Tensor, int]:
        inputs, k = self.flat_crops(batch)
        return self.net.statistics(inputs.get("images"), inputs.get("features")).double(), k

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        stats, k = self.crop_statistics(batch)
        self._train.append((stats.cpu(), batch["score"].double().repeat_interleave(k).cpu()))
        # No gradient step (there is no optimizer), but under DDP Lightning needs a loss from every step.
        return sum(parameter.sum() for parameter in self.net.head.parameters()) * 0.0

    def on_validation_epoch_start(self) -> None:
        if self._train:
            self._candidates = self._solve()
            self._train = []
        self._val = []

    def _solve(self) -> list[Fit]:
        """Every candidate solution of every head, on its z-scored slice of the training features."""
        x = self._gathered(torch.cat([s for s, _ in self._train]))
        y = self._gathered(torch.cat([t for _, t in self._train]))
        kernel = isinstance(self.net.head, RBFKernelHead)
        return [solve(x[:, part], y, kernel, self.alphas, self.gammas) for _, part in self.net.heads()]

    def _gathered(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's rows, in rank order (the distributed sampler gives every rank as many)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return rows
        return self.all_gather(rows.to(self.device)).flatten(0, 1).cpu()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if self._candidates is None:  # the sanity check before any fit
            return
        stats, k = self.crop_statistics(batch)
        per_head = []
        for (_, part), (solutions, mean, scale) in zip(self.net.heads(), self._candidates, strict=True):
            per_crop = solutions.predict((stats[:, part] - mean.to(stats.device)) / scale.to(stats.device))
            per_head.append(per_crop.view(batch["score"].shape[0], k, -1).mean(dim=1).cpu())
        self._val.append((per_head, batch["score"].cpu(), batch["index"].cpu()))

    def on_validation_epoch_end(self) -> None:
        if self._candidates is None or not self._val:
            return
        target = self._gathered(torch.cat([t for _, t, _ in self._val]))
        index = self._gathered(torch.cat([i for _, _, i in self._val]))
        picked = []
        for h, fit in enumerate(self._candidates):  # each head picks its own solution, as if alone
            preds = self._gathered(torch.cat([p[h] for p, _, _ in self._val]))
            best = best_solution(preds, target)
            picked.append(preds[:, best])
            install(self.net, h, fit, best)
            for name, value in fit[0].settings[best].items():
                self.log(f"val/ridge_{name}" + (f"_{h}" if h else ""), value)
        combined = torch.stack(picked).mean(dim=0)
        self.metrics["val"].update(combined.to(self.device), target.to(self.device), index.to(self.device))
        self._log_metrics("val")
        # One pass gives the whole fit; more epochs would collect the same crops again.
        self.trainer.should_stop = True


def solve(x: torch.Tensor, y: torch.Tensor, kernel: bool, alphas: Sequence[float], gammas: Sequence[float]) -> Fit:
    """Candidate solutions for features x (N, d) and scores y (N,): z-scored with the returned mean and scale."""
    mean, scale = x.mean(dim=0), x.std(dim=0).clamp_min(1e-8)
    z = (x - mean) / scale
    solutions = KernelRidgeSolutions(z, y, gammas, alphas) if kernel else RidgeSolutions(z, y, alphas)
    return solutions, mean, scale


def best_solution(predictions: torch.Tensor, target: torch.Tensor) -> int:
    """The candidate (column of predictions) with the best SRCC; the first on a tie."""
    srcc = [correlation_metrics(predictions[:, c], target)["srcc"] for c in range(predictions.shape[1])]
    return max(range(len(srcc)), key=srcc.__getitem__)


def install(net: StageStatisticsProbe, head_index: int, fit: Fit, index: int) -> None:
    """Sets one of the probe's heads, and the feature scaling of the statistics it reads, to one candidate."""
    head, part = net.heads()[head_index]
    solutions, mean, scale = fit
    with torch.no_grad():
        solutions.install(head, index)
        net.feature_mean[part] = mean.float()
        net.feature_scale[part] = scale.float()
