"""Sparse mixture-of-experts feed-forward block with a top-k router (Switch / ST-MoE style).

`MixtureOfExperts(x) -> (output, aux_losses)` maps (..., D) tokens to (..., D) and returns the router's
auxiliary losses, unweighted, under the names the loss config uses:
- `load_balance`: `E * sum_e mean(gate_e) * mean(topk_onehot_e)`, the Switch Transformer loss with the
  k-hot routing mask (as in the Life-IQA authors' code). Balanced routing gives its minimum, which is `top_k`
  (1.0 for top-1); skewed routing gives more.
- `z_loss`: `mean(logsumexp(logits)^2)` over tokens, from ST-MoE, keeping router logits small.
With `num_experts=1` the block is a plain feed-forward MLP and returns no auxiliary losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from biqa.models.blocks.feedforward import FeedForward


class TopKRouter(nn.Module):
    """Linear(D -> E) logits; all but the top-k logits of a token set to -inf; softmax over experts.

    Returns `(gates, indices, logits)`: gates (..., E) with exactly k nonzero entries summing to one per
    token, the chosen expert indices (..., k) and the raw logits (..., E) for the z-loss.
    """

    def __init__(self, dim: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
        self.top_k = top_k
        self.proj = nn.Linear(dim, num_experts)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.proj(x)
        top_logits, indices = logits.topk(self.top_k, dim=-1)
        masked = torch.full_like(logits, float("-inf")).scatter(-1, indices, top_logits)
        return masked.softmax(dim=-1), indices, logits


def load_balance_loss(gates: torch.Tensor, indices: torch.Tensor, num_experts: int) -> torch.Tensor:
    """`E * sum_e mean(gate_e) * mean(topk_onehot_e)` over all tokens; gradient flows through the gates only."""
    routed = F.one_hot(indices, num_experts).sum(dim=-2).float()
    tokens_per_expert = routed.reshape(-1, num_experts).mean(0)
    gate_per_expert = gates.float().reshape(-1, num_experts).mean(0)
    return num_experts * (gate_per_expert * tokens_per_expert).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """`mean(logsumexp(logits)^2)` over all tokens."""
    return logits.float().logsumexp(dim=-1).square().mean()


class MixtureOfExperts(nn.Module):
    """Top-k routed mixture of `num_experts` feed-forward experts (Linear, activation, dropout, Linear).

    Every expert runs on every token and the unchosen experts get an exact zero gate, so the output equals
    sparse dispatch; dense evaluation keeps the graph static and gives every expert a gradient each step
    (no unused-parameter search under DDP). At the token counts of the IQA decoders (tens per image) the
    extra expert FLOPs are negligible next to the backbone.
    """

    def __init__(
        self,
        dim: int,
        num_experts: int = 4,
        top_k: int = 2,
        hidden_dim: int | None = None,
        activation: str = "relu",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        hidden_dim = 4 * dim if hidden_dim is None else hidden_dim
        self.num_experts = num_experts
        self.router = TopKRouter(dim, num_experts, top_k) if num_experts > 1 else None
        self.experts = nn.ModuleList(
            FeedForward(dim, hidden_dim, activation=activation, dropout=dropout) for _ in range(num_experts)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.router is None:
            return self.experts[0](x), {}
        gates, indices, logits = self.router(x)
        expert_outputs = torch.stack([expert(x) for expert in self.experts], dim=-2)
        output = (gates.unsqueeze(-1).to(expert_outputs.dtype) * expert_outputs).sum(dim=-2)
        aux_losses = {
            "load_balance": load_balance_loss(gates, indices, self.num_experts),
            "z_loss": router_z_loss(logits),
        }
        return output, aux_losses
