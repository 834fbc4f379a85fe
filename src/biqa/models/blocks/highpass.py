"""Fixed (not learned) high-pass filters applied channel by channel: the alternative to a learned
octave-convolution high-pass. Replicate padding makes a constant image map to exactly zero, borders included.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

HighPassKind = Literal["laplacian", "sobel"]

_LAPLACIAN = [[[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]]
_SOBEL = [
    [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
    [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]],
]


class FixedHighPass(nn.Module):
    """Depthwise 3x3 high-pass: `laplacian` gives one response per input channel, `sobel` two
    (horizontal and vertical gradients), so `out_channels` is `in_channels` or `2 * in_channels`."""

    def __init__(self, kind: HighPassKind = "laplacian", in_channels: int = 3) -> None:
        super().__init__()
        kernels = {"laplacian": _LAPLACIAN, "sobel": _SOBEL}
        if kind not in kernels:
            raise ValueError(f"high-pass kind '{kind}' is unknown; choose one of {sorted(kernels)}")
        bank = torch.tensor(kernels[kind])
        self.kind, self.in_channels = kind, in_channels
        self.out_channels = in_channels * bank.shape[0]
        # one (responses, 1, 3, 3) bank per input channel; not persistent because it is never trained
        self.register_buffer("kernel", bank.unsqueeze(1).repeat(in_channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return F.conv2d(padded, self.kernel.to(x.dtype), groups=self.in_channels)
