"""The vanilla Transformer-decoder baseline that Life-IQA is compared against.

Same inputs and head as `LifeIQA` (guided queries from the last stage, the previous stage pooled onto the
last stage's grid as memory, a score per query averaged), so the comparison isolates the decoder:

    queries -> depth x [ x += SA(LN x) ; x += CA(LN x, memory) ; x += FFN(LN x) ] -> LN -> dropout -> Linear
    -> mean over queries

Parameter budget (**ours**: the paper says only "the same budget"): with the defaults (D=384, 4 layers,
6 heads, FFN hidden 960) the decoder has 8,288,641 parameters, +0.97% over Life-IQA's 8,209,158. The standard
4x FFN would need 3 layers for a similar budget (7,693,825, -6.3%); keeping Life-IQA's depth and narrowing the
FFN keeps the number of cross-attention reads of the memory the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from biqa.models.backbones import Backbone, tapped_stages_problem
from biqa.models.base import QualityModel, QualityOutput
from biqa.models.blocks.attention import TransformerDecoderLayer
from biqa.models.blocks.heads import TokenScoreHead
from biqa.models.blocks.tokens import GuidedQueries, PooledMemory


class TransformerDecoderBaseline(QualityModel):
    supports_cached_features = True

    @classmethod
    def stage_problem(cls, net: Mapping[str, Any], where: str, out_indices: Sequence[int]) -> str | None:
        return tapped_stages_problem(cls.__name__, list(net.get("stages") or []), where, out_indices)

    def __init__(
        self,
        backbone: Backbone,
        stages: tuple[int, int] = (-2, -1),
        embed_dim: int = 384,
        num_queries: int = 6,
        depth: int = 4,
        num_heads: int = 6,
        ffn_hidden_dim: int = 960,
        activation: str = "gelu",
        decoder_dropout: float = 0.0,
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.stages = tuple(stages)
        memory_channels, guide_channels = (backbone.channels[i] for i in self.stages)
        self.queries = GuidedQueries(num_queries, embed_dim, guide_channels)
        self.memory = PooledMemory(memory_channels, embed_dim)
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(embed_dim, num_heads, ffn_hidden_dim, activation, decoder_dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = TokenScoreHead(embed_dim, dropout=head_dropout)

    def forward(
        self, images: torch.Tensor | None, depth: torch.Tensor | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> QualityOutput:
        features = self.backbone(images) if features is None else features
        memory_map, guide_map = (features[i] for i in self.stages)
        x = self.queries(guide_map)
        memory = self.memory(memory_map, grid=guide_map.shape[-2:])
        for layer in self.layers:
            x = layer(x, memory)
        return QualityOutput(score=self.head(self.norm(x)))
