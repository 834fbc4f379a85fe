"""DGIQA: depth-guided feature attention and refinement (arXiv 2505.24002; authors' code `uf-robopi/DGIQA`).

Two backbones of the same kind read the RGB crop and its aligned depth crop (Depth Anything relative
inverse depth, copied to three channels). In each branch a Transformer-CNN bridge (TCB) per stage maps
the stage to 64/128/256/512 channels; the four maps are resized to a 7x7 grid and concatenated (960
channels, 49 tokens). Depth-CAR lets the depth tokens query the RGB tokens (post-norm cross-attention)
and refines the result with a post-norm self-attention block. A dilated conv stack (dilation 2, then 4),
global average pooling, a linear layer and a sigmoid give the score.

Ablations, each a constructor argument:
  - `depth_guidance`: `depth_queries` (the paper), `rgb_queries` (query/key roles swapped) or `none`
    (no depth branch: the cross block becomes RGB self-attention and the model no longer asks for depth).
  - `bridge`: `tcb` (the paper) or `conv1x1` (a plain projection in place of each TCB).
  - `refinement`: the self-attention block after Depth-CAR, on or off.
  - `dilations` ((1, 1): no dilation) and `dilated_stack` (off: the head pools the fused tokens directly).
  - `depth_backbone` may be any backbone (the depth-encoder size ablation): the bridges bring every stage
    to `bridge_channels` whatever its width.
Choice of ours: `grid` fixes the token grid (7x7, what the authors' resize-to-the-smallest-stage gives on
224 px crops); `grid=None` follows the authors' code literally (each branch's last-stage size, so it grows
with the crop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from biqa.models.backbones import DEFAULT_OUT_INDICES, Backbone
from biqa.models.base import QualityModel, QualityOutput
from biqa.models.blocks.bridges import BridgeKind, make_bridge
from biqa.models.blocks.post_norm_attention import PostNormAttentionBlock

DepthGuidance = Literal["depth_queries", "rgb_queries", "none"]


def dilated_conv_stack(in_channels: int, channels: int, dilations: Sequence[int]) -> nn.Sequential:
    """3x3 conv, BatchNorm, ReLU per dilation; padding keeps the grid size."""
    layers: list[nn.Module] = []
    for dilation in dilations:
        layers += [
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=dilation, dilation=dilation),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
        in_channels = channels
    return nn.Sequential(*layers)


class DGIQA(QualityModel):
    @classmethod
    def stage_problem(cls, net: Mapping[str, Any], where: str, out_indices: Sequence[int]) -> str | None:
        """One bridge per backbone output, of the width `bridge_channels` gives it."""
        widths = list(net.get("bridge_channels") or [])
        if len(widths) == len(out_indices):
            return None
        return (f"{cls.__name__} bridges every backbone output (model.net.bridge_channels={widths}, one width "
                f"per stage), but {where}.out_indices={list(out_indices)} gives {len(out_indices)}: give the "
                f"backbone {len(widths)} out_indices (e.g. {where}.out_indices="
                f"{list(DEFAULT_OUT_INDICES)[:len(widths)]}) or list {len(out_indices)} widths in "
                "model.net.bridge_channels")

    def __init__(
        self,
        backbone: Backbone,
        depth_backbone: Backbone | None,
        depth_guidance: DepthGuidance = "depth_queries",
        bridge: BridgeKind = "tcb",
        bridge_channels: Sequence[int] = (64, 128, 256, 512),
        bridge_gate_reduction: int = 16,
        bridge_dropout: float = 0.1,
        grid: int | None = 7,
        num_heads: int = 16,
        ffn_ratio: int = 4,
        attention_dropout: float = 0.1,
        refinement: bool = True,
        dilated_stack: bool = True,
        stack_channels: int = 1024,
        dilations: Sequence[int] = (2, 4),
    ) -> None:
        super().__init__()
        if depth_guidance not in get_args(DepthGuidance):
            raise ValueError(f"depth_guidance must be one of {get_args(DepthGuidance)}, got {depth_guidance!r}")
        if (depth_guidance == "none") != (depth_backbone is None):
            raise ValueError(
                "depth_guidance='none' goes with depth_backbone=None and every other setting needs a depth "
                f"backbone; got depth_guidance={depth_guidance!r} and depth_backbone="
                f"{'None' if depth_backbone is None else type(depth_backbone).__name__}"
            )
        self.uses_depth = depth_guidance != "none"
        self.depth_guidance = depth_guidance
        self.grid = grid
        dim = sum(bridge_channels)

        def bridges_for(stages: Backbone) -> nn.ModuleList:
            if len(stages.channels) != len(bridge_channels):
                raise ValueError(
                    f"bridge_channels has {len(bridge_channels)} widths but the backbone gives "
                    f"{len(stages.channels)} stages ({stages.channels})"
                )
            return nn.ModuleList(
                make_bridge(bridge, c_in, c_out, gate_reduction=bridge_gate_reduction, dropout=bridge_dropout)
                for c_in, c_out in zip(stages.channels, bridge_channels, strict=True)
            )

        self.backbone = backbone
        self.rgb_bridges = bridges_for(backbone)
        self.depth_backbone = depth_backbone
        self.depth_bridges = bridges_for(depth_backbone) if depth_backbone is not None else None

        def attention_block() -> PostNormAttentionBlock:
            return PostNormAttentionBlock(dim, num_heads, ffn_ratio * dim, dropout=attention_dropout)

        self.depth_car = attention_block()
        self.refinement = attention_block() if refinement else nn.Identity()
        self.dilated_stack = dilated_conv_stack(dim, stack_channels, dilations) if dilated_stack else nn.Identity()
        self.head = nn.Linear(stack_channels if dilated_stack else dim, 1)

    def fused_stages(self, stages: Backbone, bridges: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """One branch: bridge every stage, resize to the grid, concatenate -> (N, sum(bridge_channels), g, g)."""
        maps = [bridge(feature) for bridge, feature in zip(bridges, stages(x), strict=True)]
        size = maps[-1].shape[-2:] if self.grid is None else (self.grid, self.grid)
        return torch.cat([F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps], dim=1)

    def forward(self, images: torch.Tensor, depth: torch.Tensor | None = None) -> QualityOutput:
        rgb = self.fused_stages(self.backbone, self.rgb_bridges, images)
        context = None
        if not self.uses_depth:
            queries = rgb
        elif depth is None:
            raise ValueError("DGIQA with a depth branch needs `depth` (N, 1, h, w) float in [0, 1]")
        else:
            # The depth backbone normalises like the RGB one, so a depth map enters as a grey image.
            depth_map = self.fused_stages(self.depth_backbone, self.depth_bridges, depth.expand(-1, 3, -1, -1))
            queries, context = (depth_map, rgb) if self.depth_guidance == "depth_queries" else (rgb, depth_map)
        height, width = queries.shape[-2:]
        tokens = self.depth_car(
            rearrange(queries, "n c h w -> n (h w) c"),
            None if context is None else rearrange(context, "n c h w -> n (h w) c"),
        )
        fused = rearrange(self.refinement(tokens), "n (h w) c -> n c h w", h=height, w=width)
        pooled = self.dilated_stack(fused).mean(dim=(2, 3))
        return QualityOutput(score=torch.sigmoid(self.head(pooled)).squeeze(-1))
