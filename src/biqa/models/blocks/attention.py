"""Multi-head attention sub-layers over token sequences (B, T, D), batch first.

`SelfAttention` and `CrossAttention` return the update only, never `x + update`: each model places its own
residuals, norms and dropouts (pre-norm here, post-norm in DGIQA), so the same blocks serve every decoder.
`TransformerDecoderLayer` is the standard pre-norm decoder layer built from them.
"""

from __future__ import annotations

import torch
from torch import nn

from biqa.models.blocks.feedforward import FeedForward


class SelfAttention(nn.Module):
    """Multi-head self-attention among the tokens of `x`, with an optional LayerNorm on its input."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, pre_norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.attn(x, x, x, need_weights=False)[0]


class CrossAttention(nn.Module):
    """Multi-head attention from the tokens of `x` (queries) to `memory` (keys and values).

    Only the queries are normalised: the memory comes from its own projection and is read as it is,
    which is how Life-IQA and DETR-style query decoders treat it.
    `memory_dim` defaults to `dim`; a different width gets separate key/value projections.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        memory_dim: int | None = None,
        dropout: float = 0.0,
        pre_norm: bool = True,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()
        self.attn = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True, kdim=memory_dim, vdim=memory_dim
        )

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.attn(self.norm(x), memory, memory, need_weights=False)[0]


class TransformerDecoderLayer(nn.Module):
    """Pre-norm decoder layer: `x += SA(LN x)`, `x += CA(LN x, memory)`, `x += FFN(LN x)`.

    `dropout` is applied to each sub-layer's update before its residual add (and inside attention and FFN).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_hidden_dim: int,
        activation: str = "gelu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.self_attention = SelfAttention(dim, num_heads, dropout=dropout)
        self.cross_attention = CrossAttention(dim, num_heads, dropout=dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_hidden_dim, activation=activation, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(x))
        x = x + self.dropout(self.cross_attention(x, memory))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))
