"""Graph convolution over a small set of token nodes (B, N, D), as in Kipf & Welling's GCN.

Each layer computes `A_hat @ (x W^T) + b`, where `A_hat = D^-1/2 (A + I) D^-1/2` is the symmetrically
normalised adjacency with self-loops. The adjacency is either fixed (a complete graph, as in the Life-IQA
authors' code) or learnable (as the Life-IQA paper text describes).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AdjacencyKind = Literal["fixed", "learnable"]


def normalize_adjacency(adjacency: torch.Tensor) -> torch.Tensor:
    """`D^-1/2 (A + I) D^-1/2` for a non-negative (N, N) adjacency without self-loops."""
    with_loops = adjacency + torch.eye(adjacency.shape[-1], dtype=adjacency.dtype, device=adjacency.device)
    inv_sqrt_degree = with_loops.sum(-1).clamp_min(1e-6).rsqrt()
    return inv_sqrt_degree.unsqueeze(-1) * with_loops * inv_sqrt_degree.unsqueeze(-2)


class GraphConvolution(nn.Module):
    """One graph-conv layer: transform every node, then mix nodes with the given normalised adjacency.

    The bias is added after the mixing, so it stays a per-feature offset whatever the adjacency's row sums.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The Life-IQA authors store W as (in, out) and call kaiming_uniform_, whose fan is then the output
        # width; fan_out on our (out, in) layout draws from the same distribution.
        nn.init.kaiming_uniform_(self.weight, mode="fan_out")
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        out = adjacency @ F.linear(x, self.weight)
        return out if self.bias is None else out + self.bias


class GraphConvNetwork(nn.Module):
    """A stack of graph convolutions over `num_nodes` nodes: dim -> hidden_dims... -> dim, ReLU between.

    `adjacency="fixed"`: the complete graph (all ones), normalised once (2/7 on the diagonal and 1/7 elsewhere
    for six nodes). `adjacency="learnable"` (**ours**, the paper gives no parameterisation): a free (N, N)
    weight per edge, made non-negative by softplus and symmetric by averaging with its transpose, then
    normalised the same way; it starts at the all-ones graph, so it starts equal to the fixed one.
    All layers of one network share its adjacency.
    """

    def __init__(
        self,
        dim: int,
        num_nodes: int,
        hidden_dims: tuple[int, ...] | None = None,
        adjacency: AdjacencyKind = "fixed",
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_dims = (dim // 2, dim // 4) if hidden_dims is None else tuple(hidden_dims)
        widths = (dim, *hidden_dims, dim)
        self.layers = nn.ModuleList(
            GraphConvolution(w_in, w_out, bias=bias) for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.adjacency_kind = adjacency
        if adjacency == "fixed":
            self.register_buffer("fixed_adjacency", normalize_adjacency(torch.ones(num_nodes, num_nodes)), persistent=False)
        elif adjacency == "learnable":
            softplus_inverse_of_one = math.log(math.e - 1.0)
            self.edge_weights = nn.Parameter(torch.full((num_nodes, num_nodes), softplus_inverse_of_one))
        else:
            raise ValueError(f"adjacency must be 'fixed' or 'learnable', got {adjacency!r}")

    def normalized_adjacency(self) -> torch.Tensor:
        if self.adjacency_kind == "fixed":
            return self.fixed_adjacency
        edges = F.softplus(self.edge_weights)
        return normalize_adjacency((edges + edges.transpose(0, 1)) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adjacency = self.normalized_adjacency().to(x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, adjacency)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
