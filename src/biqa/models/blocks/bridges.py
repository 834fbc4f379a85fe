"""Bridges from a backbone stage to the width a decoder works at."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn


class TransformerCnnBridge(nn.Module):
    """DGIQA's Transformer-CNN bridge (TCB): (N, in, H, W) -> (N, out, H, W).

    1x1 conv to `out_channels`; a squeeze-excitation style channel gate (1x1 conv to out/`gate_reduction`,
    ReLU, 1x1 conv back, sigmoid, multiply); 3x3 conv; BatchNorm; ReLU; Dropout2d.
    The gate is computed at every position, without a global pool, as in the authors' code: it re-weights
    channels locally, where a classic SE block would use one weight per channel for the whole map.
    """

    def __init__(
        self, in_channels: int, out_channels: int, gate_reduction: int = 16, dropout: float = 0.1
    ) -> None:
        super().__init__()
        gate_channels = max(1, out_channels // gate_reduction)
        self.project = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.gate = nn.Sequential(
            nn.Conv2d(out_channels, gate_channels, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(gate_channels, out_channels, kernel_size=1),
            nn.Sigmoid(),
        )
        self.local_mix = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        return self.local_mix(x * self.gate(x))


BridgeKind = Literal["tcb", "conv1x1"]


def make_bridge(
    kind: BridgeKind, in_channels: int, out_channels: int, gate_reduction: int = 16, dropout: float = 0.1
) -> nn.Module:
    """`tcb`: a `TransformerCnnBridge`; `conv1x1`: a plain 1x1 projection (the TCB ablation)."""
    if kind == "tcb":
        return TransformerCnnBridge(in_channels, out_channels, gate_reduction=gate_reduction, dropout=dropout)
    if kind == "conv1x1":
        return nn.Conv2d(in_channels, out_channels, kernel_size=1)
    raise ValueError(f"bridge must be one of {get_args(BridgeKind)}, got {kind!r}")
