"""The contract between a decoder and the one regression LightningModule.

A model takes a batch of crops (already normalised by its backbone) and returns a `QualityOutput`:
the predicted score per crop, its auxiliary losses (unweighted; weights live in the loss config) and any
extra heads (e.g. distortion-type logits). It never sees targets and owns no training loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class QualityOutput:
    score: torch.Tensor
    """Predicted quality per crop, shape (N,), on the normalised [0, 1] higher-is-better scale."""
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    """Named scalar auxiliary losses (e.g. MoE `load_balance`, `z_loss`), unweighted."""
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    """Extra head outputs keyed by name (e.g. `distortion_logits`)."""


class QualityModel(nn.Module):
    """Base class: a backbone plus a quality decoder.

    Subclasses set `self.backbone` (a `biqa.models.backbones.Backbone`) and implement `forward`.
    `uses_depth` tells the datamodule to supply aligned depth crops.
    `supports_cached_features`: `forward(images=None, features=maps)` takes the backbone's stage maps,
    computed once by the frozen-backbone feature cache (biqa.data.derived.feature_cache), and skips the backbone;
    with `needs_images_with_features` it gets the crops too, for branches that read pixels (MFENet, BFRD).
    `decoder_parameters()` is every trainable parameter outside backbones (for lr groups and cost reports).
    `has_conditional_parameters`: some trainable parameter gets no gradient from some batches (a head trained
    only on labelled images); DDP then has to search every step for the parameters a step did not use.
    `stage_problem` checks the model's config against the stages a backbone gives, before anything is built.
    """

    uses_depth: bool = False
    has_conditional_parameters: bool = False
    supports_cached_features: bool = False
    needs_images_with_features: bool = False

    def forward(
        self, images: torch.Tensor | None, depth: torch.Tensor | None = None,
        features: list[torch.Tensor] | None = None,
    ) -> QualityOutput:
        raise NotImplementedError

    @classmethod
    def stage_problem(cls, net: Mapping[str, Any], where: str, out_indices: Sequence[int]) -> str | None:
        """What is wrong with the model config `net` if the backbone at config key `where` gives the stages
        `out_indices` (None: nothing), with the change that fixes it. Models that tap stages override it."""
        return None

    def backbone_modules(self) -> list[nn.Module]:
        return [m for m in self.modules() if m is not self and getattr(m, "is_backbone", False)]

    def backbone_parameter_ids(self) -> set[int]:
        return {id(p) for m in self.backbone_modules() for p in m.parameters()}

    def decoder_parameters(self) -> list[nn.Parameter]:
        backbone_ids = self.backbone_parameter_ids()
        return [p for p in self.parameters() if id(p) not in backbone_ids]
