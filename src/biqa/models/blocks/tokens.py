"""Turning backbone feature maps into the tokens a query decoder works on: guided queries and pooled memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class GuidedQueries(nn.Module):
    """`num_queries` learnable tokens, each shifted by one global vector of a guide feature map.

    The guide map goes through a 1x1 conv to `dim` and is averaged over its positions; the result is added to
    every query, so the queries start from what the whole image looks like (Life-IQA's stage-4 guidance).
    """

    def __init__(self, num_queries: int, dim: int, guide_channels: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.empty(1, num_queries, dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.guide_proj = nn.Conv2d(guide_channels, dim, kernel_size=1)

    def forward(self, guide_map: torch.Tensor) -> torch.Tensor:
        global_vector = self.guide_proj(guide_map).mean(dim=(2, 3))
        return self.queries + global_vector.unsqueeze(1)


class PooledMemory(nn.Module):
    """A feature map average-pooled onto a given grid, flattened to tokens (row-major) and projected to `dim`.

    Pooling a 14x14 map onto 7x7 averages 2x2 windows; `adaptive_avg_pool2d` does it in one op (and handles
    grids that do not divide evenly by overlapping its windows).
    """

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, dim)

    def forward(self, feature_map: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(feature_map, grid)
        return self.proj(rearrange(pooled, "b c h w -> b (h w) c"))
