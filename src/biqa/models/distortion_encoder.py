"""BFRD's distortion encoder: a small CNN whose features tell distortion types and levels apart.

It is trained on its own (biqa.lit.contrastive, `biqa-pretrain-distortion`) with a supervised contrastive
loss over synthetic distortions, saved with `save`, and loaded frozen into BFRD with `load`. The
projection head serves only the contrastive loss; BFRD reads the feature map before it (as in SimCLR,
the representation before the projection transfers better).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn


def _conv_relu(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
    ]


class DistortionEncoder(nn.Module):
    """A stride-2 3x3 stem, then one stage per further width: stride-2 conv + conv (3x3 conv, ReLU each).

    With the default widths (32, 64, 128, 256) the map has stride 16. No early max-pool, no ImageNet
    normalisation and no normalisation layers: noise, blocking and blur live in the finest pixels, and
    brightness and contrast distortions in absolute levels that a per-image norm would divide away. (No
    batch norm also means a frozen encoder computes in BFRD exactly what it computed when it was trained.)
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256), projection_dim: int = 128) -> None:
        super().__init__()
        channels = list(channels)
        self.hyperparameters = {"channels": channels, "projection_dim": projection_dim}
        layers = _conv_relu(3, channels[0], stride=2)
        for in_channels, out_channels in zip(channels[:-1], channels[1:], strict=True):
            layers += _conv_relu(in_channels, out_channels, stride=2) + _conv_relu(
                out_channels, out_channels, 1
            )
        self.features = nn.Sequential(*layers)
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                # He initialisation keeps the signal's scale through the ReLUs; with no normalisation layers,
                # PyTorch's default init would shrink it layer after layer into a near-constant embedding.
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.embedding_dim = channels[-1]
        self.projection_head = nn.Sequential(
            nn.Linear(self.embedding_dim, self.embedding_dim),
            nn.ReLU(inplace=True),
            nn.Linear(self.embedding_dim, projection_dim),
        )

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] (N, 3, H, W) -> (N, embedding_dim, H/16, W/16) with the default widths."""
        # Centred input: with zero biases at init the first layer then responds to structure, not to brightness.
        return self.features(images - 0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The embedding: the feature map averaged over positions, (N, embedding_dim)."""
        return self.feature_map(images).mean(dim=(2, 3))

    def project(self, embedding: torch.Tensor) -> torch.Tensor:
        """The contrastive projection (N, projection_dim), not normalised."""
        return self.projection_head(embedding)

    def save(self, path: str | Path, pretraining: dict | None = None) -> None:
        """Writes the hyperparameters, the weights and, for provenance, how it was trained (`pretraining`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = {"hyperparameters": self.hyperparameters, "state_dict": self.state_dict()}
        torch.save({**checkpoint, "pretraining": pretraining or {}}, path)

    @classmethod
    def load(cls, path: str | Path) -> DistortionEncoder:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"distortion encoder checkpoint {path} does not exist; train one with `biqa-pretrain-distortion`"
            )
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        encoder = cls(**checkpoint["hyperparameters"])
        encoder.load_state_dict(checkpoint["state_dict"])
        return encoder
