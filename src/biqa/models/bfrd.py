"""BFRD: bidirectional feature fusion and regional distortion extraction (Neurocomputing 660, 131761, 2026).

No public code; the abstract fixes the parts, this project chose the rest (models.md section 3):

    image tokens:      backbone (4 stages) -> BidirectionalFusion -> SwinBlocks (shifted windows in every
                       second block) -> OverlappingCrossWindowAttention (OCAB)
    distortion tokens: frozen distortion encoder (contrastively pretrained) -> pooled to a grid -> Linear
    fusion:            distortion tokens attend to image tokens, then a sparse MoE feed-forward
    score:             mean of the fused tokens -> MLP -> sigmoid

Ablation switches: `top_down_only`, `window_depth` (0 = no window attention), `overlapping_attention`,
`overlap_ratio`, `distortion_encoder` (contrastive | imagenet | none), `fusion_mode`
(moe | cross_attention | concat), `moe_style` (sparse_ffn | parallel_experts), `num_experts`, `top_k`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from biqa.models.backbones import DEFAULT_OUT_INDICES, Backbone
from biqa.models.base import QualityModel, QualityOutput
from biqa.models.blocks.attention import CrossAttention
from biqa.models.blocks.feedforward import FeedForward
from biqa.models.blocks.fusion import BidirectionalFusion
from biqa.models.blocks.moe import MixtureOfExperts, TopKRouter, load_balance_loss, router_z_loss
from biqa.models.blocks.windows import OverlappingCrossWindowAttention, SwinBlock
from biqa.models.distortion_encoder import DistortionEncoder

log = logging.getLogger(__name__)

DISTORTION_ENCODERS = ("contrastive", "imagenet", "none")
FUSION_MODES = ("moe", "cross_attention", "concat")
MOE_STYLES = ("sparse_ffn", "parallel_experts")
SCORE_ACTIVATIONS = ("sigmoid", "linear")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


class DistortionTokens(nn.Module):
    """Tokens describing the distortion of a crop: a frozen encoder's last map, pooled to a grid, projected.

    `source`: "contrastive" loads the DistortionEncoder trained by `biqa-pretrain-distortion` from
    `checkpoint`; "imagenet" uses `imagenet_encoder` (a Backbone with ImageNet weights) instead, its last
    stage; "none" drops the distortion path and gives `grid * grid` learned query tokens, so the decoder
    after it keeps its size and only the distortion information goes.
    The encoder is frozen: no gradient, and it stays in eval mode whatever mode the model is put in.
    """

    def __init__(
        self,
        source: str,
        dim: int,
        grid: int = 7,
        checkpoint: str | None = None,
        allow_untrained_encoder: bool = False,
        imagenet_encoder: Backbone | None = None,
    ) -> None:
        super().__init__()
        _check_choice("distortion_encoder", source, DISTORTION_ENCODERS)
        self.source, self.grid = source, grid
        self.encoder: nn.Module | None = None
        if source == "none":
            self.queries = nn.Parameter(torch.empty(1, grid * grid, dim))
            nn.init.trunc_normal_(self.queries, std=0.02)
            return
        if source == "contrastive":
            self.encoder = self._contrastive_encoder(checkpoint, allow_untrained_encoder)
            channels = self.encoder.embedding_dim
        else:
            if imagenet_encoder is None:
                raise ValueError(
                    "distortion_encoder=imagenet needs model.net.imagenet_encoder: a Backbone config with "
                    "pretrained weights (see conf/ablation/bfrd/encoder_imagenet.yaml)"
                )
            self.encoder = imagenet_encoder
            channels = imagenet_encoder.channels[-1]
        self.encoder.requires_grad_(False).eval()
        self.proj = nn.Linear(channels, dim)

    @staticmethod
    def _contrastive_encoder(checkpoint: str | None, allow_untrained_encoder: bool) -> DistortionEncoder:
        if checkpoint:
            return DistortionEncoder.load(checkpoint)
        if not allow_untrained_encoder:
            raise ValueError(
                "distortion_encoder=contrastive needs model.net.distortion_checkpoint: train the encoder with "
                "`biqa-pretrain-distortion` and pass the checkpoint it prints; or set "
                "model.net.distortion_encoder=imagenet|none. (allow_untrained_encoder=true exists only for "
                "tests and CPU smoke runs.)"
            )
        message = (
            "BFRD IS USING AN UNTRAINED, RANDOMLY INITIALISED DISTORTION ENCODER "
            "(allow_untrained_encoder=true): unless a trained BFRD checkpoint is loaded over it, its results say "
            "nothing about BFRD. Only for tests and smoke runs."
        )
        log.warning("!" * 20 + " " + message + " " + "!" * 20)
        warnings.warn(message, stacklevel=3)
        return DistortionEncoder()

    def train(self, mode: bool = True) -> DistortionTokens:
        super().train(mode)
        if self.encoder is not None:
            # Frozen means frozen: an ImageNet CNN's batch-norm statistics and any dropout stay as trained.
            self.encoder.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, grid * grid, dim)."""
        if self.encoder is None:
            return self.queries.expand(images.shape[0], -1, -1)
        with torch.no_grad():
            if self.source == "contrastive":
                feature_map = self.encoder.feature_map(images)
            else:
                feature_map = self.encoder(images)[-1]
        pooled = F.adaptive_avg_pool2d(feature_map, self.grid)
        return self.proj(rearrange(pooled, "n c h w -> n (h w) c"))


class ConcatFusion(nn.Module):
    """No attention: each distortion token is concatenated with the mean image token and projected back."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)

    def forward(
        self, distortion_tokens: torch.Tensor, image_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_summary = image_tokens.mean(dim=1, keepdim=True).expand_as(distortion_tokens)
        return self.proj(torch.cat([distortion_tokens, image_summary], dim=-1)), {}


class CrossAttentionFusion(nn.Module):
    """Distortion tokens attend to image tokens, then a feed-forward; pre-norm, residuals around both.

    The feed-forward is a top-k routed MoE per token (Life-IQA's router and auxiliary losses); with
    `num_experts=1` it is a dense MLP and there are no auxiliary losses (plain cross-attention).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_experts: int = 4,
        top_k: int = 2,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.cross_attention = CrossAttention(dim, num_heads, dropout=dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = MixtureOfExperts(
            dim, num_experts, top_k, int(dim * mlp_ratio), activation="gelu", dropout=dropout
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self, distortion_tokens: torch.Tensor, image_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = distortion_tokens + self.drop(self.cross_attention(distortion_tokens, image_tokens))
        update, aux_losses = self.ffn(self.ffn_norm(x))
        return x + self.drop(update), aux_losses


class ParallelExpertsCrossAttention(nn.Module):
    """`num_experts` cross-attentions from distortion to image tokens, mixed by a top-k gate, then a dense
    feed-forward. The gate reads the pooled distortion tokens: one routing decision per image, so the kind
    of distortion picks the experts. The gate's auxiliary losses are those of the sparse MoE.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_experts: int = 4,
        top_k: int = 2,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.gate = TopKRouter(dim, num_experts, top_k)
        self.experts = nn.ModuleList(
            CrossAttention(dim, num_heads, dropout=dropout) for _ in range(num_experts)
        )
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, int(dim * mlp_ratio), activation="gelu", dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, distortion_tokens: torch.Tensor, image_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        gates, indices, logits = self.gate(distortion_tokens.mean(dim=1))
        updates = torch.stack([expert(distortion_tokens, image_tokens) for expert in self.experts], dim=1)
        update = torch.einsum("ne,netd->ntd", gates.to(updates.dtype), updates)
        x = distortion_tokens + self.drop(update)
        aux_losses = {
            "load_balance": load_balance_loss(gates, indices, self.num_experts),
            "z_loss": router_z_loss(logits),
        }
        return x + self.drop(self.ffn(self.ffn_norm(x))), aux_losses


def token_fusion(
    fusion_mode: str,
    moe_style: str,
    dim: int,
    num_heads: int,
    num_experts: int,
    top_k: int,
    mlp_ratio: float,
    dropout: float,
) -> nn.Module:
    """The block fusing distortion tokens with image tokens: `(distortion, image) -> (tokens, aux_losses)`.

    `fusion_mode`: "moe" (the paper's MoE cross-attention), "cross_attention" (the same with a dense
    feed-forward) or "concat" (no attention). `moe_style` for "moe": "sparse_ffn" (**ours**, default:
    cross-attention then a sparse MoE feed-forward) or "parallel_experts" (gated cross-attention experts).
    """
    _check_choice("fusion_mode", fusion_mode, FUSION_MODES)
    _check_choice("moe_style", moe_style, MOE_STYLES)
    if fusion_mode == "concat":
        return ConcatFusion(dim)
    if fusion_mode == "cross_attention":
        return CrossAttentionFusion(dim, num_heads, 1, 1, mlp_ratio, dropout)
    if moe_style == "parallel_experts":
        return ParallelExpertsCrossAttention(dim, num_heads, num_experts, top_k, mlp_ratio, dropout)
    return CrossAttentionFusion(dim, num_heads, num_experts, top_k, mlp_ratio, dropout)


class BFRD(QualityModel):
    """Backbone -> bidirectional fusion -> window attention -> OCAB -> image tokens; frozen distortion
    encoder -> distortion tokens; MoE cross-attention; mean-pooled tokens -> MLP -> score.

    With the feature cache the backbone's maps come from the cache and the images still feed the
    distortion encoder (`needs_images_with_features`).

    `grid_reduction`: the backbone stride whose grid the fused map (and every token) lives on; 16 gives a
    14x14 map at 224 px, four 7x7 windows, so shifted windows have borders to cross (32 would give one).
    `score_activation`: "sigmoid" (**ours**, default) keeps the score on the [0, 1] scale of the normalised
    MOS by construction; "linear" leaves it unbounded, as PooledHead does.
    """

    supports_cached_features = True
    needs_images_with_features = True

    @classmethod
    def stage_problem(cls, net: Mapping[str, Any], where: str, out_indices: Sequence[int]) -> str | None:
        """The fusion runs top-down and bottom-up over a pyramid: two levels at least (the paper: four)."""
        if len(out_indices) >= 2:
            return None
        return (f"{cls.__name__} fuses a pyramid of backbone stages (the paper: four), but {where}.out_indices="
                f"{list(out_indices)} gives {len(out_indices)}: set {where}.out_indices={list(DEFAULT_OUT_INDICES)}")

    def __init__(
        self,
        backbone: Backbone,
        width: int = 256,
        num_heads: int = 8,
        grid_reduction: int = 16,
        top_down_only: bool = False,
        fusion_merge: str = "concat",
        window_size: int = 7,
        window_depth: int = 2,
        relative_position_bias: bool = True,
        overlapping_attention: bool = True,
        overlap_ratio: float = 0.5,
        mlp_ratio: float = 4.0,
        distortion_encoder: str = "contrastive",
        distortion_checkpoint: str | None = None,
        allow_untrained_encoder: bool = False,
        imagenet_encoder: Backbone | None = None,
        distortion_grid: int = 7,
        fusion_mode: str = "moe",
        moe_style: str = "sparse_ffn",
        num_experts: int = 4,
        top_k: int = 2,
        head_hidden_dim: int = 128,
        dropout: float = 0.1,
        score_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        _check_choice("score_activation", score_activation, SCORE_ACTIVATIONS)
        if grid_reduction not in backbone.reductions:
            raise ValueError(
                f"grid_reduction {grid_reduction} is not one of the backbone's {backbone.reductions}"
            )
        self.backbone = backbone
        self.fusion = BidirectionalFusion(
            backbone.channels,
            width,
            output_level=list(backbone.reductions).index(grid_reduction),
            top_down_only=top_down_only,
            merge=fusion_merge,
        )
        self.window_blocks = nn.Sequential(
            *(
                SwinBlock(
                    width,
                    num_heads,
                    window_size,
                    shift_size=window_size // 2 if index % 2 else 0,
                    mlp_ratio=mlp_ratio,
                    relative_position_bias=relative_position_bias,
                    dropout=dropout,
                )
                for index in range(window_depth)
            )
        )
        self.overlapping_block = (
            OverlappingCrossWindowAttention(
                width, num_heads, window_size, overlap_ratio, mlp_ratio, relative_position_bias, dropout
            )
            if overlapping_attention
            else nn.Identity()
        )
        self.image_norm = nn.LayerNorm(width)
        self.distortion_tokens = DistortionTokens(
            distortion_encoder,
            width,
            distortion_grid,
            distortion_checkpoint,
            allow_untrained_encoder,
            imagenet_encoder,
        )
        self.token_fusion = token_fusion(
            fusion_mode, moe_style, width, num_heads, num_experts, top_k, mlp_ratio, dropout
        )
        self.head = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, head_hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden_dim, 1),
        )
        self.score_activation = score_activation

    def image_tokens(self, images: torch.Tensor, features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """(N, 3, H, W) -> (N, h * w, width) on the `grid_reduction` grid."""
        maps = self.backbone(images) if features is None else features
        fused = rearrange(self.fusion(maps), "n c h w -> n h w c")
        regional = self.overlapping_block(self.window_blocks(fused))
        return self.image_norm(rearrange(regional, "n h w c -> n (h w) c"))

    def forward(
        self, images: torch.Tensor, depth: torch.Tensor | None = None, features: list[torch.Tensor] | None = None,
    ) -> QualityOutput:
        tokens, aux_losses = self.token_fusion(self.distortion_tokens(images), self.image_tokens(images, features))
        score = self.head(tokens.mean(dim=1)).squeeze(-1)
        if self.score_activation == "sigmoid":
            score = score.sigmoid()
        return QualityOutput(score=score, aux_losses=aux_losses)
