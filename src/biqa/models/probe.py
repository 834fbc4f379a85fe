"""The probe floor on real data: channel mean and standard deviation of every backbone stage of a frozen
backbone, z-scored, then one linear layer (`head=linear`) or an RBF-kernel head over the training photos'
features (`head=rbf_kernel`). Its weights come from a closed-form fit (biqa.lit.ridge.RidgeProbeRegressor:
ridge or kernel ridge), not from gradient steps; a decoder earns its parameters by beating it.
"""

from __future__ import annotations

import torch
from torch import nn

from biqa.models.backbones import Backbone
from biqa.models.base import QualityModel, QualityOutput
from biqa.models.blocks.heads import RBFKernelHead

HEADS = ("linear", "rbf_kernel")


class StageStatisticsProbe(QualityModel):
    supports_cached_features = True

    def __init__(self, backbone: Backbone, head: str = "linear") -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"model.net.head={head} is unknown; choose one of {', '.join(HEADS)}")
        if any(p.requires_grad for p in backbone.parameters()):
            raise ValueError("the stage-statistics probe reads a frozen backbone: set model.backbone.freeze=all")
        self.backbone = backbone
        dim = 2 * sum(backbone.channels)
        # Persistent, so a checkpoint carries the training set's feature scaling with the ridge weights.
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_scale", torch.ones(dim))
        if head == "linear":
            self.head = nn.Linear(dim, 1)
            nn.init.zeros_(self.head.weight)
            nn.init.constant_(self.head.bias, 0.5)
        else:
            self.head = RBFKernelHead(dim)

    def statistics(self, images: torch.Tensor | None, features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """(N, 2 * sum(channels)): every stage's per-channel spatial mean, then its (population) standard
        deviation, which stays defined on a 1x1 map."""
        maps = self.backbone(images) if features is None else features
        maps = [m.float().flatten(2) for m in maps]
        return torch.cat([m.mean(dim=2) for m in maps] + [m.std(dim=2, correction=0) for m in maps], dim=1)

    def standardized(self, statistics: torch.Tensor) -> torch.Tensor:
        return (statistics - self.feature_mean) / self.feature_scale

    def forward(
        self, images: torch.Tensor | None, depth: torch.Tensor | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> QualityOutput:
        z = self.standardized(self.statistics(images, features))
        return QualityOutput(score=self.head(z).squeeze(-1))
