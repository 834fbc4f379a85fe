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


class RBFKernelHead(nn.Module):
    """score = sum_i w_i exp(-gamma ||x - a_i||^2) + b: the prediction of kernel ridge regression with an RBF
    kernel, over anchors a_i that are the training set's (standardized) features: (N, dim) -> (N, 1).

    A closed-form fit sets every buffer (biqa.lit.ridge); their count is the training set's, so a checkpoint's
    own buffer shapes are taken on loading. The anchors are float16 (half the file); the fit solves on the
    rounded values, so the head reproduces the fitted predictions.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("anchors", torch.zeros(0, dim, dtype=torch.float16))
        self.register_buffer("dual_weights", torch.zeros(0))
        self.register_buffer("gamma", torch.tensor(1.0 / dim))
        # A parameter, as nn.Linear's bias is: the module trains nothing by gradient, but DDP needs one to wrap.
        self.bias = nn.Parameter(torch.tensor(0.5))
        self.register_load_state_dict_pre_hook(lambda module, state, prefix, *_: self.take_stored_shapes(state, prefix))

    def take_stored_shapes(self, state_dict: dict[str, torch.Tensor], prefix: str = "") -> None:
        """Resizes the fit-sized buffers to a state dict's, before loading it."""
        for name in ("anchors", "dual_weights"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))

    def set_solution(self, anchors: torch.Tensor, dual_weights: torch.Tensor, gamma: float, bias: float) -> None:
        self.anchors = anchors.to(self.anchors.device, torch.float16)
        self.dual_weights = dual_weights.to(self.dual_weights.device, torch.float32)
        with torch.no_grad():
            self.gamma.fill_(gamma)
            self.bias.fill_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = torch.exp(-self.gamma * torch.cdist(x, self.anchors.to(x.dtype)).square())
        return (kernel @ self.dual_weights.to(x.dtype) + self.bias).unsqueeze(-1)
