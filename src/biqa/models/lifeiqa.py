"""Life-IQA: GCN-enhanced layer interaction and MoE-based feature decoupling (arXiv 2511.19024).

Figure, with the paper's Swin-B numbers:

    image -> backbone -> stage 3 (512 @ 14x14) -> pool to the stage-4 grid -> Linear -> memory (49 tokens)
                      -> stage 4 (1024 @ 7x7)  -> 1x1 conv, mean -> global vector
    6 learnable queries + global vector
      -> depth x [ x += dropout(GCN(x)) over the query nodes ; x += MHA(LN x, memory, memory) ]
      -> LN -> x += gamma * MoE(x) -> dropout -> Linear per query -> mean over queries = score

Any backbone works: the two tapped stages (`stages`, positions in the backbone's output list, by default its
last two) give the channels, and the memory is pooled onto whatever grid stage 4 has.

Ablations (constructor switches; one config each in conf/ablation/lifeiqa/, e.g. `ablation=lifeiqa/no_gcn`):
- `interaction`: "gcn" (paper) | "attention" (pre-norm self-attention among the queries) | "none".
- `adjacency`: "fixed" (authors' code) | "learnable" (paper text), see `GraphConvNetwork`.
- `stage3_memory`: False drops the stage-3 key/value path and with it every cross-attention sub-layer;
  the queries then see the image only through the stage-4 global vector (**ours**: the paper does not say
  what replaces the path; the alternative would be attending to the stage-4 tokens).
- `moe_placement`: "end" (paper) | "every_layer" (**ours**: a pre-norm `x += gamma * MoE(LN x)` sub-layer
  closes every decoder layer and the block after the final norm goes) | "none".
- `num_experts`: 2 / 4 / 8; 1 turns the MoE into a plain feed-forward block ("MoE replaced by FFN").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from biqa.models.backbones import Backbone, tapped_stages_problem
from biqa.models.base import QualityModel, QualityOutput
from biqa.models.blocks.attention import CrossAttention, SelfAttention
from biqa.models.blocks.gcn import AdjacencyKind, GraphConvNetwork
from biqa.models.blocks.heads import TokenScoreHead
from biqa.models.blocks.moe import MixtureOfExperts
from biqa.models.blocks.tokens import GuidedQueries, PooledMemory

Interaction = Literal["gcn", "attention", "none"]
MoEPlacement = Literal["end", "every_layer", "none"]
MOE_LOSS_NAMES = ("load_balance", "z_loss")


class ScaledMoE(nn.Module):
    """`x + gamma * MoE(norm(x))` with a learnable scalar gamma, so the experts start as a small correction."""

    def __init__(
        self,
        dim: int,
        num_experts: int,
        top_k: int,
        dropout: float,
        gamma_init: float,
        pre_norm: bool,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()
        self.moe = MixtureOfExperts(dim, num_experts=num_experts, top_k=top_k, dropout=dropout)
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        update, aux_losses = self.moe(self.norm(x))
        return x + self.gamma * update, aux_losses


def build_interaction(kind: Interaction, dim: int, num_nodes: int, num_heads: int, adjacency: AdjacencyKind):
    """The module that lets the query tokens exchange information, or None."""
    if kind == "gcn":
        return GraphConvNetwork(dim, num_nodes, adjacency=adjacency)
    if kind == "attention":
        return SelfAttention(dim, num_heads)
    if kind == "none":
        return None
    raise ValueError(f"interaction must be 'gcn', 'attention' or 'none', got {kind!r}")


class LifeIQADecoderLayer(nn.Module):
    """`x += dropout(interaction(x))` (no norm before it), then `x += dropout(MHA(LN x, memory, memory))`,
    then, in the every-layer MoE variant, `x += gamma * MoE(LN x)`. No feed-forward otherwise."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_queries: int,
        interaction: Interaction,
        adjacency: AdjacencyKind,
        cross_attention: bool,
        moe: ScaledMoE | None,
        dropout: float,
    ) -> None:
        super().__init__()
        self.interaction = build_interaction(interaction, dim, num_queries, num_heads, adjacency)
        self.cross_attention = CrossAttention(dim, num_heads, dropout=dropout) if cross_attention else None
        self.moe = moe
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.interaction is not None:
            x = x + self.dropout(self.interaction(x))
        if self.cross_attention is not None:
            x = x + self.dropout(self.cross_attention(x, memory))
        if self.moe is None:
            return x, {}
        return self.moe(x)


class LifeIQA(QualityModel):
    """Life-IQA decoder on any multi-stage backbone; the constructor defaults are the paper's setting.

    `decoder_dropout` is the dropout of the decoder layers' updates and attention (0.0 in the authors' code);
    `expert_dropout` is inside each expert; `head_dropout` is before the per-query Linear.
    """

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
        interaction: Interaction = "gcn",
        adjacency: AdjacencyKind = "fixed",
        stage3_memory: bool = True,
        moe_placement: MoEPlacement = "end",
        num_experts: int = 4,
        top_k: int = 2,
        expert_dropout: float = 0.1,
        gamma_init: float = 0.1,
        decoder_dropout: float = 0.0,
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if moe_placement not in ("end", "every_layer", "none"):
            raise ValueError(f"moe_placement must be 'end', 'every_layer' or 'none', got {moe_placement!r}")
        self.backbone = backbone
        self.stages = tuple(stages)
        memory_channels, guide_channels = (backbone.channels[i] for i in self.stages)

        def scaled_moe(pre_norm: bool) -> ScaledMoE:
            return ScaledMoE(embed_dim, num_experts, top_k, expert_dropout, gamma_init, pre_norm)

        self.queries = GuidedQueries(num_queries, embed_dim, guide_channels)
        self.memory = PooledMemory(memory_channels, embed_dim) if stage3_memory else None
        self.layers = nn.ModuleList(
            LifeIQADecoderLayer(
                embed_dim,
                num_heads,
                num_queries,
                interaction=interaction,
                adjacency=adjacency,
                cross_attention=stage3_memory,
                moe=scaled_moe(pre_norm=True) if moe_placement == "every_layer" else None,
                dropout=decoder_dropout,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.moe = scaled_moe(pre_norm=False) if moe_placement == "end" else None
        self.head = TokenScoreHead(embed_dim, dropout=head_dropout)

    def forward(
        self, images: torch.Tensor | None, depth: torch.Tensor | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> QualityOutput:
        features = self.backbone(images) if features is None else features
        stage3, stage4 = (features[i] for i in self.stages)

        x = self.queries(stage4)
        memory = self.memory(stage3, grid=stage4.shape[-2:]) if self.memory is not None else None
        router_losses = []
        for layer in self.layers:
            x, layer_losses = layer(x, memory)
            router_losses.append(layer_losses)
        x = self.norm(x)
        if self.moe is not None:
            x, moe_losses = self.moe(x)
            router_losses.append(moe_losses)
        score = self.head(x)
        return QualityOutput(score=score, aux_losses=average_router_losses(router_losses, like=score))


def average_router_losses(
    losses: list[dict[str, torch.Tensor]], like: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Mean of each router loss over the MoE blocks that produced one.

    Variants without a router (no MoE, or a single expert) report zeros, so the loss terms of the model
    config stay valid across every ablation.
    """
    averaged = {}
    for name in MOE_LOSS_NAMES:
        values = [d[name] for d in losses if name in d]
        averaged[name] = torch.stack(values).mean() if values else like.new_zeros(())
    return averaged
