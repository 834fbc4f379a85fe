"""Closed-form training for linear probes (biqa.models.probe): one pass over the training crops collects
the features, ridge regression is solved for every penalty in `alphas`, and the validation part picks the
penalty with the best SRCC, as it picks a decoder's checkpoint. Evaluation, metrics, predictions and
checkpoints are the regression module's, so a probe is a row of any study like a decoder.
Under DDP every rank collects its shard's features and statistics; all ranks solve on all of them, gathered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from omegaconf import DictConfig

from biqa.lit.losses import Batch, LossTerm
from biqa.lit.optim import OptimConfig
from biqa.lit.regression import QualityRegressor
from biqa.metrics import correlation_metrics
from biqa.models.probe import StageStatisticsProbe

DEFAULT_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


class RidgeProbeRegressor(QualityRegressor):
    uses_optimizer = False

    def __init__(
        self,
        net: StageStatisticsProbe,
        losses: Mapping[str, LossTerm],
        optim: OptimConfig | Mapping[str, Any] | None = None,
        run_config: DictConfig | dict | None = None,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
    ) -> None:
        super().__init__(net, losses, optim=optim, run_config=run_config)
        if not isinstance(net, StageStatisticsProbe):
            raise ValueError(f"ridge fitting needs a biqa.models.probe.StageStatisticsProbe, not {type(net).__name__}")
        if not alphas or any(a <= 0 for a in alphas):
            raise ValueError(f"model.module.alphas must be positive penalties, got {list(alphas)}")
        self.alphas = [float(a) for a in alphas]
        self._train: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._candidates: tuple[torch.Tensor, float, torch.Tensor, torch.Tensor] | None = None
        self._val: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

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

    def _solve(self) -> tuple[torch.Tensor, float, torch.Tensor, torch.Tensor]:
        """Ridge on z-scored features, one solution per alpha: weights (d, A); the intercept, the training
        crops' mean score, is the same for every alpha."""
        x = self._gathered(torch.cat([s for s, _ in self._train]))
        y = self._gathered(torch.cat([t for _, t in self._train]))
        mean, scale = x.mean(dim=0), x.std(dim=0).clamp_min(1e-8)
        z = (x - mean) / scale
        gram, moment = z.T @ z, z.T @ (y - y.mean())
        eye = torch.eye(gram.shape[0], dtype=gram.dtype)
        weights = torch.stack([torch.linalg.solve(gram + a * eye, moment) for a in self.alphas], dim=1)
        return weights, float(y.mean()), mean, scale

    def _gathered(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's rows, in rank order (the distributed sampler gives every rank as many)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return rows
        return self.all_gather(rows.to(self.device)).flatten(0, 1).cpu()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if self._candidates is None:  # the sanity check before any fit
            return
        weights, intercept, mean, scale = self._candidates
        stats, k = self.crop_statistics(batch)
        device = stats.device
        per_crop = ((stats - mean.to(device)) / scale.to(device)) @ weights.to(device) + intercept
        per_image = per_crop.view(batch["score"].shape[0], k, -1).mean(dim=1)
        self._val.append((per_image.cpu(), batch["score"].cpu(), batch["index"].cpu()))

    def on_validation_epoch_end(self) -> None:
        if self._candidates is None or not self._val:
            return
        preds = self._gathered(torch.cat([p for p, _, _ in self._val]))
        target = self._gathered(torch.cat([t for _, t, _ in self._val]))
        index = self._gathered(torch.cat([i for _, _, i in self._val]))
        srcc = [correlation_metrics(preds[:, a], target)["srcc"] for a in range(len(self.alphas))]
        best = max(range(len(self.alphas)), key=lambda a: srcc[a])
        weights, intercept, mean, scale = self._candidates
        with torch.no_grad():
            self.net.head.weight.copy_(weights[:, best].view(1, -1).float())
            self.net.head.bias.fill_(intercept)
            self.net.feature_mean.copy_(mean.float())
            self.net.feature_scale.copy_(scale.float())
        self.log("val/ridge_alpha", self.alphas[best])
        self.metrics["val"].update(preds[:, best].to(self.device), target.to(self.device), index.to(self.device))
        self._log_metrics("val")
        # One pass gives the whole fit; more epochs would collect the same crops again.
        self.trainer.should_stop = True
