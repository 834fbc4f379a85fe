"""Bidirectional fusion of multi-stage backbone features (PANet).

Stages, finest first, go through 1x1 laterals to a common width. The top-down pass carries coarse
semantics to the fine maps (upsample, add, 3x3 conv); the bottom-up pass carries fine detail back up
(stride-2 3x3 conv, add), so every level sees both. All levels are then resized onto the grid of one
level and merged into a single map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MERGES = ("concat", "sum")


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average a finer map down to `size`, bilinearly interpolate a coarser one up, keep an equal one."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class BidirectionalFusion(nn.Module):
    """PANet-style top-down + bottom-up fusion of feature maps, merged onto the grid of `output_level`.

    `top_down_only=True` drops the bottom-up pass (an FPN): the ablation of the second direction.
    `merge`: "concat" (**ours**, default) concatenates the resized levels and mixes them with a 1x1 conv,
    so the model learns how much each level counts; "sum" adds them with equal weight.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        width: int = 256,
        output_level: int = 2,
        top_down_only: bool = False,
        merge: str = "concat",
    ) -> None:
        super().__init__()
        levels = len(in_channels)
        if levels < 2:
            raise ValueError(f"fusion needs at least two feature levels, got {levels}")
        if not -levels <= output_level < levels:
            raise ValueError(f"output_level {output_level} is outside the {levels} levels")
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        self.output_level = output_level % levels
        self.laterals = nn.ModuleList(nn.Conv2d(channels, width, kernel_size=1) for channels in in_channels)
        self.top_down = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size=3, padding=1) for _ in range(levels - 1)
        )
        self.bottom_up = (
            None
            if top_down_only
            else nn.ModuleList(
                nn.Conv2d(width, width, kernel_size=3, stride=2, padding=1) for _ in range(levels - 1)
            )
        )
        self.merge = nn.Conv2d(levels * width, width, kernel_size=1) if merge == "concat" else None

    def levels(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """features: NCHW maps, finest first -> the fused map of every level, each on its own grid."""
        maps = [lateral(feature) for lateral, feature in zip(self.laterals, features, strict=True)]
        for level in reversed(range(len(maps) - 1)):
            coarser = F.interpolate(maps[level + 1], size=maps[level].shape[-2:], mode="nearest")
            maps[level] = self.top_down[level](maps[level] + coarser)
        if self.bottom_up is not None:
            for level, downsample in enumerate(self.bottom_up):
                # Odd map sides make a stride-2 conv round differently from the backbone: resize to match.
                finer = resize_to(downsample(maps[level]), maps[level + 1].shape[-2:])
                maps[level + 1] = maps[level + 1] + finer
        return maps

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """features: NCHW maps, finest first -> one (N, width, h, w) map on the grid of `output_level`."""
        maps = self.levels(features)
        grid = maps[self.output_level].shape[-2:]
        resized = [resize_to(m, grid) for m in maps]
        if self.merge is None:
            return torch.stack(resized).sum(dim=0)
        return self.merge(torch.cat(resized, dim=1))
