"""Fusion of two same-shaped feature maps: attentional feature fusion (Dai et al., "Attentional Feature
Fusion", WACV 2021) and the addition / concatenation baselines it is compared against.

Every fusion module takes `(x, y)`, both (N, C, H, W), and returns (N, C, H, W); `x` is the main stream
(e.g. quality features) and `y` the one fused into it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

FusionKind = Literal["aff", "add", "concat"]


def _pointwise_bottleneck(channels: int, reduction: int) -> nn.Sequential:
    hidden = max(1, channels // reduction)
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
    )


class MultiScaleChannelAttention(nn.Module):
    """MS-CAM: per-position, per-channel weights in (0, 1) from a local branch (1x1-conv bottleneck at
    every position) plus a global branch (the same bottleneck on the average-pooled map)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.local_branch = _pointwise_bottleneck(channels, reduction)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.global_branch = _pointwise_bottleneck(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.local_branch(x) + self.global_branch(self.global_pool(x)))


class AttentionalFusion(nn.Module):
    """AFF: `w = MS-CAM(x + y)`, output `2*x*w + 2*y*(1-w)`.

    The factor 2 (as in the AFF authors' release) keeps the output on the scale of `x + y` when w ~ 0.5.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.attention = MultiScaleChannelAttention(channels, reduction)

    def weights(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.attention(x + y)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.weights(x, y)
        return 2 * x * w + 2 * y * (1 - w)


class AdditiveFusion(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class ConcatFusion(nn.Module):
    """Concatenate along channels, then a 1x1 conv and batch norm back to C channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([x, y], dim=1))


def make_fusion(kind: FusionKind, channels: int, reduction: int = 4) -> nn.Module:
    """`aff` (attentional feature fusion), `add` or `concat`, all mapping (x, y) -> a map like x."""
    if kind == "aff":
        return AttentionalFusion(channels, reduction)
    if kind == "add":
        return AdditiveFusion()
    if kind == "concat":
        return ConcatFusion(channels)
    raise ValueError(f"fusion kind '{kind}' is unknown; choose one of aff, add, concat")
