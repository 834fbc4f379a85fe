"""Loss terms the regression module sums. Each term is configured with its weight in the model config.

A term maps (model output, flattened batch) to a scalar, or to None when it does not apply to the batch
(e.g. a distortion-type loss on a dataset without type labels); the module logs what it skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from biqa.models.base import QualityOutput

Batch = dict[str, torch.Tensor]


class LossTerm(nn.Module):
    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, output: QualityOutput, batch: Batch) -> torch.Tensor | None:
        raise NotImplementedError

    needs_score_range = False

    def use_score_range(self, raw_range: float) -> None:
        """Told the training dataset's raw score range (high - low) before training, when
        `needs_score_range`; the other terms ignore it."""


class ScoreLoss(LossTerm):
    """Regression of the predicted score on the MOS.

    `scale`: "unit" compares them on biqa's [0, 1] scale; "raw" on the dataset's own range (both stretched
    by high - low, e.g. x100 on KonIQ's MOS_zscore), as the Life-IQA authors train: there SmoothL1 with
    beta 1 acts as an L1, and the auxiliary losses weigh as little against it as in their runs. The model
    still predicts on [0, 1], so metrics, checkpoints and predictions are unchanged."""

    kinds = {"l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss, "mse": F.mse_loss}
    scales = ("unit", "raw")

    def __init__(self, kind: str = "smooth_l1", weight: float = 1.0, beta: float = 1.0,
                 scale: str = "unit") -> None:
        super().__init__(weight)
        if kind not in self.kinds:
            raise ValueError(f"loss kind '{kind}' is unknown; choose one of {sorted(self.kinds)}")
        if scale not in self.scales:
            raise ValueError(f"score loss scale '{scale}' is unknown; choose one of {', '.join(self.scales)}")
        self.kind, self.beta, self.scale = kind, beta, scale
        self.needs_score_range = scale == "raw"
        self.raw_range: float | None = None

    def use_score_range(self, raw_range: float) -> None:
        self.raw_range = float(raw_range)

    def forward(self, output: QualityOutput, batch: Batch) -> torch.Tensor:
        prediction, target = output.score, batch["score"].to(output.score.dtype)
        if self.scale == "raw":
            if self.raw_range is None:
                raise RuntimeError("model.losses.score.scale=raw needs the dataset's score range: "
                                   "call use_score_range() before training (biqa-train does)")
            prediction, target = prediction * self.raw_range, target * self.raw_range
        if self.kind == "smooth_l1":
            return F.smooth_l1_loss(prediction, target, beta=self.beta)
        return self.kinds[self.kind](prediction, target)


class PLCCLoss(LossTerm):
    """1 - Pearson correlation of the batch: trains the ranking and linearity the metrics reward."""

    def forward(self, output: QualityOutput, batch: Batch) -> torch.Tensor | None:
        pred, target = output.score.float(), batch["score"].float()
        if pred.numel() < 2 or target.std() == 0:
            return None
        pred, target = pred - pred.mean(), target - target.mean()
        return 1 - (pred * target).sum() / (pred.norm() * target.norm() + 1e-8)


class AuxLoss(LossTerm):
    """An auxiliary loss the model computed itself (e.g. MoE load balance); None when the model has none."""

    def __init__(self, key: str, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.key = key

    def forward(self, output: QualityOutput, batch: Batch) -> torch.Tensor | None:
        return output.aux_losses.get(self.key)


class DistortionTypeLoss(LossTerm):
    """Cross-entropy of the model's distortion-type head, on the crops whose image has a type label (>= 0)."""

    def __init__(self, weight: float = 0.3, required: bool = False, logits_key: str = "distortion_logits") -> None:
        super().__init__(weight)
        self.required, self.logits_key = required, logits_key

    def forward(self, output: QualityOutput, batch: Batch) -> torch.Tensor | None:
        labels = batch.get("distortion_type")
        labelled = labels >= 0 if labels is not None else None
        if labelled is None or not bool(labelled.any()):
            if self.required:
                raise ValueError(
                    "the distortion_type loss is required but this batch has no distortion-type labels: "
                    "use a dataset with type labels (synthetic, kadid10k, tid2013, csiq, live) or set "
                    "model.losses.distortion_type.required=false"
                )
            return None
        logits = output.extras[self.logits_key]
        if int(labels.max()) >= logits.shape[-1]:
            raise ValueError(
                f"distortion-type label {int(labels.max())} does not fit the model's {logits.shape[-1]} classes: "
                "set model.net.num_distortion_types to the dataset's number of types"
            )
        return F.cross_entropy(logits[labelled], labels[labelled])
