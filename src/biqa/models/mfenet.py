"""MFENet: multi-task feature enhancement network (Li Yu, arXiv 2411.07556; no public code).

Three networks read the same crop:
  - the quality network (the backbone, four stages),
  - a high-frequency network: two-conv stem to stride 4, a high-pass (octave convolutions whose last layer
    keeps only the high-frequency part), then strided convs giving one map per backbone stage,
  - a distortion-aware network: a small CNN whose pooled features classify the distortion type.
Attentional feature fusion (AFF) joins high-frequency into quality features at every stage and the
distortion features into the last stage; a head on the fused last stage gives the score (sigmoid, so it
lies in (0, 1)). The distortion-type logits go out as `extras["distortion_logits"]` for the multi-task loss.

Choices of ours (the paper does not fix them), each a constructor argument:
  - `high_pass`: `octave` (the paper) or a fixed `laplacian` / `sobel` filter on the image followed by plain
    convs of the same depth.
  - `stage_aggregation`: the backbone runs as a black box, so fused maps cannot re-enter its next stage as
    they would in an in-line design. `carry` passes each fused stage on to the next (average pool to its
    grid, 1x1 conv, added to that stage's quality features) and the head reads the fused last stage;
    `pool_all` instead pools every fused stage and concatenates them for the head.
  - high-frequency maps are `high_frequency_width` wide through the pyramid and 1x1-projected to each
    stage's width, which keeps the network small beside wide backbones (2048 channels for ResNet-50).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from biqa.models.backbones import Backbone
from biqa.models.base import QualityModel, QualityOutput
from biqa.models.blocks.attentional_fusion import FusionKind, make_fusion
from biqa.models.blocks.highpass import FixedHighPass
from biqa.models.blocks.octave import OctaveStack

HighPass = Literal["octave", "laplacian", "sobel"]
StageAggregation = Literal["carry", "pool_all"]


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv1x1_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))


def resize_like(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # strided convs round odd sizes up while patchify stems round them down: reconcile the off-by-ones
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


def halvings(reduction_from: int, reduction_to: int) -> int:
    """Stride-2 steps from one reduction to a coarser one (0 when it is not coarser)."""
    return max(0, round(math.log2(reduction_to / reduction_from)))


class HighFrequencyNetwork(nn.Module):
    """Image -> one high-frequency map per backbone stage, with that stage's channels and (about) its grid."""

    stem_reduction = 4

    def __init__(
        self,
        stage_channels: Sequence[int],
        stage_reductions: Sequence[int],
        width: int = 64,
        high_pass: HighPass = "octave",
        depth: int = 3,
        alpha: float = 0.5,
    ) -> None:
        super().__init__()
        if high_pass == "octave":
            self.fixed_filter = None
            in_channels = 3
        elif high_pass in ("laplacian", "sobel"):
            self.fixed_filter = FixedHighPass(high_pass, in_channels=3)
            in_channels = self.fixed_filter.out_channels
        else:
            raise ValueError(f"high_pass '{high_pass}' is unknown; choose one of octave, laplacian, sobel")
        self.stem = nn.Sequential(conv_bn_relu(in_channels, width // 2, stride=2), conv_bn_relu(width // 2, width, stride=2))
        if self.fixed_filter is None:
            self.trunk = OctaveStack(width, width, depth=depth, alpha=alpha)
        else:
            self.trunk = nn.Sequential(*(conv_bn_relu(width, width) for _ in range(depth)))

        self.downsamples = nn.ModuleList()
        self.projections = nn.ModuleList()
        reduction = self.stem_reduction
        for channels, stage_reduction in zip(stage_channels, stage_reductions, strict=True):
            steps = halvings(reduction, stage_reduction)
            self.downsamples.append(nn.Sequential(*(conv_bn_relu(width, width, stride=2) for _ in range(steps))))
            self.projections.append(conv1x1_bn(width, channels))
            reduction *= 2**steps

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.fixed_filter(images) if self.fixed_filter is not None else images
        x = self.trunk(self.stem(x))
        maps = []
        for downsample, project in zip(self.downsamples, self.projections, strict=True):
            x = downsample(x)
            maps.append(project(x))
        return maps


class DistortionAwareNetwork(nn.Module):
    """A small CNN of stride-2 conv blocks; its pooled features classify the distortion type."""

    def __init__(self, num_types: int, channels: Sequence[int] = (16, 32, 64, 128, 256), dropout: float = 0.1) -> None:
        super().__init__()
        widths = [3, *channels]
        self.features = nn.Sequential(*(conv_bn_relu(widths[i], widths[i + 1], stride=2) for i in range(len(channels))))
        self.out_channels = widths[-1]
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(self.out_channels, num_types)
        )

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(images)
        return features, self.classifier(features)


class MFENet(QualityModel):
    # With the feature cache, the quality network's maps come from the cache; the high-frequency and
    # distortion-aware networks still read the crop.
    supports_cached_features = True
    needs_images_with_features = True

    def __init__(
        self,
        backbone: Backbone,
        num_distortion_types: int,
        high_frequency: bool = True,
        high_pass: HighPass = "octave",
        high_frequency_width: int = 64,
        octave_depth: int = 3,
        octave_alpha: float = 0.5,
        distortion_aware: bool = True,
        distortion_channels: Sequence[int] = (16, 32, 64, 128, 256),
        fusion: FusionKind = "aff",
        fusion_reduction: int = 4,
        stage_aggregation: StageAggregation = "carry",
        head_hidden: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if stage_aggregation not in ("carry", "pool_all"):
            raise ValueError(f"stage_aggregation '{stage_aggregation}' is unknown; choose carry or pool_all")
        self.backbone = backbone
        self.stage_aggregation = stage_aggregation
        channels = list(backbone.channels)

        self.high_frequency = None
        self.high_frequency_fusions = None
        if high_frequency:
            self.high_frequency = HighFrequencyNetwork(
                channels, backbone.reductions, high_frequency_width, high_pass, octave_depth, octave_alpha
            )
            self.high_frequency_fusions = nn.ModuleList(make_fusion(fusion, c, fusion_reduction) for c in channels)

        self.distortion_aware = None
        if distortion_aware:
            self.distortion_aware = DistortionAwareNetwork(num_distortion_types, distortion_channels, dropout)
            self.distortion_projection = conv1x1_bn(self.distortion_aware.out_channels, channels[-1])
            self.distortion_fusion = make_fusion(fusion, channels[-1], fusion_reduction)

        self.carries = None
        if stage_aggregation == "carry":
            self.carries = nn.ModuleList(conv1x1_bn(c_in, c_out) for c_in, c_out in pairwise(channels))
        head_channels = channels[-1] if stage_aggregation == "carry" else sum(channels)
        head: list[nn.Module] = [nn.Dropout(dropout)]
        if head_hidden > 0:
            head += [nn.Linear(head_channels, head_hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(head_hidden, 1)]
        else:
            head += [nn.Linear(head_channels, 1)]
        self.head = nn.Sequential(*head)

    @property
    def has_conditional_parameters(self) -> bool:
        # The type classifier learns only from batches with distortion-type labels: none on KonIQ or BIQ2021,
        # some on a mix of datasets, and under DDP one rank's batch may have them while another's has not.
        return self.distortion_aware is not None

    def forward(
        self, images: torch.Tensor, depth: torch.Tensor | None = None, features: list[torch.Tensor] | None = None,
    ) -> QualityOutput:
        quality = self.backbone(images) if features is None else features
        high = self.high_frequency(images) if self.high_frequency is not None else None

        fused: list[torch.Tensor] = []
        for stage, features in enumerate(quality):
            if self.carries is not None and fused:
                previous = F.adaptive_avg_pool2d(fused[-1], features.shape[-2:])
                features = features + self.carries[stage - 1](previous)
            if high is not None:
                features = self.high_frequency_fusions[stage](features, resize_like(high[stage], features))
            fused.append(features)

        extras: dict[str, torch.Tensor] = {}
        if self.distortion_aware is not None:
            distortion, extras["distortion_logits"] = self.distortion_aware(images)
            distortion = resize_like(self.distortion_projection(distortion), fused[-1])
            fused[-1] = self.distortion_fusion(fused[-1], distortion)

        pooled = [f.mean(dim=(2, 3)) for f in (fused[-1:] if self.stage_aggregation == "carry" else fused)]
        score = torch.sigmoid(self.head(torch.cat(pooled, dim=1))).squeeze(-1)
        return QualityOutput(score=score, extras=extras)
