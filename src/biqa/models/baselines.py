"""The floor every decoder must beat: global average pooling of the last stage and a linear or MLP head."""

from __future__ import annotations

import torch
from torch import nn

from biqa.models.backbones import Backbone
from biqa.models.base import QualityModel, QualityOutput


class PooledHead(QualityModel):
    supports_cached_features = True

    def __init__(self, backbone: Backbone, hidden_dim: int = 0, dropout: float = 0.0,
                 initial_score: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.channels[-1]
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        if hidden_dim > 0:
            layers += [nn.Linear(channels, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1)]
        else:
            layers += [nn.Linear(channels, 1)]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(*layers)
        # Every image starts at the middle of the score range: a randomly initialised output layer on
        # unnormalised backbone features starts far off it, and the first epochs go to undoing that.
        nn.init.zeros_(self.head[-1].weight)
        nn.init.constant_(self.head[-1].bias, initial_score)

    def forward(
        self, images: torch.Tensor | None, depth: torch.Tensor | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> QualityOutput:
        last_stage = (self.backbone(images) if features is None else features)[-1]
        return QualityOutput(score=self.head(self.pool(last_stage)).squeeze(-1))
