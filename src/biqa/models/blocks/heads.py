"""Score heads: from decoder tokens to one quality score per image."""

from __future__ import annotations

import torch
from torch import nn


class TokenScoreHead(nn.Module):
    """Dropout, Linear(dim -> 1) on every token, mean over tokens: (B, T, dim) -> (B,).

    Each query token gives its own score and the image score is their average, as in DEIQT and Life-IQA.
    """

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(tokens)).squeeze(-1).mean(dim=-1)
