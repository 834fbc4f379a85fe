"""The probe floor on real data: channel mean and standard deviation of every backbone stage of a frozen
backbone (and of any `extra_backbones`, on the same crops), z-scored, then one linear layer (`head=linear`)
or an RBF-kernel head over the training photos' features (`head=rbf_kernel`). Its weights come from a
closed-form fit (biqa.lit.ridge.RidgeProbeRegressor: ridge or kernel ridge), not from gradient steps; a
decoder earns its parameters by beating it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from biqa.models.backbones import Backbone
from biqa.models.base import QualityModel, QualityOutput
from biqa.models.blocks.heads import RBFKernelHead

HEADS = ("linear", "rbf_kernel")
COMBINES = ("concat", "mean")


class StageStatisticsProbe(QualityModel):
    supports_cached_features = True

    def __init__(
        self, backbone: Backbone, head: str = "linear", extra_backbones: Sequence[Backbone] = (),
        combine: str = "concat",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"model.net.head={head} is unknown; choose one of {', '.join(HEADS)}")
        if combine not in COMBINES:
            raise ValueError(f"model.net.combine={combine} is unknown; choose one of {', '.join(COMBINES)}")
        if any(p.requires_grad for p in backbone.parameters()):
            raise ValueError("the stage-statistics probe reads a frozen backbone: set model.backbone.freeze=all")
        if any(p.requires_grad for extra in extra_backbones for p in extra.parameters()):
            raise ValueError("the stage-statistics probe reads frozen backbones: give model.net.extra_backbones "
                             "freeze: all")
        self.backbone = backbone
        # Further frozen backbones on the same crops (the feature cache stores one backbone, so a probe with
        # extras reads images): their statistics are appended to the first's, and read by one head
        # (combine=concat) or by a head per backbone whose scores are averaged (combine=mean).
        self.extra_backbones = nn.ModuleList(extra_backbones)
        self.supports_cached_features = not extra_backbones
        dims = [2 * sum(b.channels) for b in [backbone, *extra_backbones]]
        bounds = [0, *itertools.accumulate(dims)]
        self.head_slices = ([slice(0, bounds[-1])] if combine == "concat" else
                            [slice(start, end) for start, end in zip(bounds[:-1], bounds[1:], strict=True)])
        # Persistent, so a checkpoint carries the training set's feature scaling with the ridge weights.
        self.register_buffer("feature_mean", torch.zeros(bounds[-1]))
        self.register_buffer("feature_scale", torch.ones(bounds[-1]))
        heads = [self._new_head(head, part.stop - part.start) for part in self.head_slices]
        self.head = heads[0]
        self.extra_heads = nn.ModuleList(heads[1:])

    @staticmethod
    def _new_head(kind: str, dim: int) -> nn.Module:
        if kind == "rbf_kernel":
            return RBFKernelHead(dim)
        linear = nn.Linear(dim, 1)
        nn.init.zeros_(linear.weight)
        nn.init.constant_(linear.bias, 0.5)
        return linear

    def heads(self) -> list[tuple[nn.Module, slice]]:
        """Each head with the slice of the statistics it reads."""
        return list(zip([self.head, *self.extra_heads], self.head_slices, strict=True))

    def statistics(self, images: torch.Tensor | None, features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """(N, 2 * sum(channels)) per backbone, concatenated: every stage's per-channel spatial mean, then its
        (population) standard deviation, which stays defined on a 1x1 map."""
        maps = self.backbone(images) if features is None else features
        return torch.cat([stage_statistics(maps)] + [stage_statistics(extra(images)) for extra in self.extra_backbones],
                         dim=1)

    def standardized(self, statistics: torch.Tensor) -> torch.Tensor:
        return (statistics - self.feature_mean) / self.feature_scale

    def forward(
        self, images: torch.Tensor | None, depth: torch.Tensor | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> QualityOutput:
        z = self.standardized(self.statistics(images, features))
        scores = [head(z[:, part]).squeeze(-1) for head, part in self.heads()]
        return QualityOutput(score=torch.stack(scores).mean(dim=0))


def stage_statistics(maps: list[torch.Tensor]) -> torch.Tensor:
    maps = [m.float().flatten(2) for m in maps]
    return torch.cat([m.mean(dim=2) for m in maps] + [m.std(dim=2, correction=0) for m in maps], dim=1)
