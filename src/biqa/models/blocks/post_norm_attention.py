"""The post-norm transformer block (original "Attention is all you need" order), as DGIQA's Depth-CAR uses it."""

from __future__ import annotations

import torch
from torch import nn

from biqa.models.blocks.attention import CrossAttention
from biqa.models.blocks.feedforward import FeedForward


class PostNormAttentionBlock(nn.Module):
    """`x = LN(q + drop(attn(q, kv)))`, then `LN(x + drop(FFN(x)))`, on batch-first tokens (B, T, dim).

    Called with `context`: cross-attention, queries from `queries`, keys and values from `context` (the two
    may have different lengths; the output has the queries' length). Called without: self-attention.
    `dropout` acts on the attention weights and on both sub-layer updates; the FFN has none inside.
    """

    def __init__(
        self, dim: int, num_heads: int, ffn_hidden_dim: int, activation: str = "gelu", dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.attention = CrossAttention(dim, num_heads, dropout=dropout, pre_norm=False)
        self.attention_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_hidden_dim, activation=activation)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = queries if context is None else context
        x = self.attention_norm(queries + self.dropout(self.attention(queries, context)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))
