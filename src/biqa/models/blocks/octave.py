"""Octave convolution (Chen et al., "Drop an Octave", ICCV 2019).

A feature map is split into a high-frequency part at full resolution and a low-frequency part at half
resolution; `alpha` is the fraction of channels in the low part. Each octave convolution keeps four paths,
high->high, high->low (pool first), low->high (upsample after) and low->low, so the two parts exchange
information at every layer. `alpha_in = 0` starts the split from a plain map and `alpha_out = 0` ends it
with a high-frequency map only, which is how MFENet discards the low-frequency part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def split_channels(channels: int, alpha: float) -> tuple[int, int]:
    """(high, low) channel counts for a map with `alpha` of its channels in the low-frequency part."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    low = int(alpha * channels)
    return channels - low, low


def downsample_octave(x: torch.Tensor) -> torch.Tensor:
    # ceil_mode keeps odd sizes covered, so the low part is always ceil(H/2) x ceil(W/2)
    return F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


def upsample_to(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    # nearest upsampling by the exact target size, not by a factor 2, so odd high-frequency sizes round-trip
    return F.interpolate(x, size=size, mode="nearest")


class OctaveConv(nn.Module):
    """One octave convolution: (high, low) -> (high, low); `low` is None on the side whose alpha is 0."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        alpha_in: float = 0.5,
        alpha_out: float = 0.5,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_high, self.in_low = split_channels(in_channels, alpha_in)
        self.out_high, self.out_low = split_channels(out_channels, alpha_out)

        def conv(cin: int, cout: int) -> nn.Conv2d | None:
            if cin == 0 or cout == 0:
                return None
            return nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)

        self.high_to_high = conv(self.in_high, self.out_high)
        self.high_to_low = conv(self.in_high, self.out_low)
        self.low_to_high = conv(self.in_low, self.out_high)
        self.low_to_low = conv(self.in_low, self.out_low)

    def forward(
        self, high: torch.Tensor, low: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if (low is None) != (self.in_low == 0):
            raise ValueError(f"this octave conv expects a low-frequency input of {self.in_low} channels")
        out_high = self.high_to_high(high)
        if low is not None:
            out_high = out_high + upsample_to(self.low_to_high(low), out_high.shape[-2:])
        if self.out_low == 0:
            return out_high, None
        out_low = self.high_to_low(downsample_octave(high))
        if low is not None:
            out_low = out_low + self.low_to_low(low)
        return out_high, out_low


class OctaveConvBNAct(nn.Module):
    """Octave convolution followed by batch norm and ReLU on each frequency part separately."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, alpha_in: float = 0.5, alpha_out: float = 0.5
    ) -> None:
        super().__init__()
        self.conv = OctaveConv(in_channels, out_channels, kernel_size, alpha_in, alpha_out)
        self.norm_high = nn.BatchNorm2d(self.conv.out_high)
        self.norm_low = nn.BatchNorm2d(self.conv.out_low) if self.conv.out_low else None
        self.act = nn.ReLU(inplace=True)

    def forward(
        self, high: torch.Tensor, low: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        high, low = self.conv(high, low)
        high = self.act(self.norm_high(high))
        if low is not None:
            low = self.act(self.norm_low(low))
        return high, low


class OctaveStack(nn.Module):
    """`depth` octave layers on a plain map: the first splits it, the middle ones exchange high and low
    parts, the last keeps only the high-frequency output. Returns a plain map of `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int, depth: int = 3, alpha: float = 0.5) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"an octave stack needs at least 2 layers (split, then merge), got {depth}")
        alphas = [0.0] + [alpha] * (depth - 1) + [0.0]
        channels = [in_channels] + [out_channels] * depth
        self.layers = nn.ModuleList(
            OctaveConvBNAct(channels[i], channels[i + 1], alpha_in=alphas[i], alpha_out=alphas[i + 1])
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high, low = x, None
        for layer in self.layers:
            high, low = layer(high, low)
        return high
