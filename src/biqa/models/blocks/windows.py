"""Attention inside local windows of a token map, for regional distortion features.

`SwinBlock` attends among the tokens of non-overlapping M x M windows; alternate blocks shift the windows
by M/2 (a cyclic roll plus a mask that keeps the rolled-in border pieces apart) so information crosses
window borders. `OverlappingCrossWindowAttention` is HAT's OCAB: queries from M x M windows, keys and
values from the larger window of M + overlap * M tokens around each, so neighbouring regions meet in one
step.

Token maps are channels-last (B, H, W, C). A map whose sides are not multiples of M is padded at the
bottom and right; padded tokens are never attended to (Swin lets them take part as zeros; masking them
keeps a crop's prediction independent of how far its map is from a multiple of M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from biqa.models.blocks.feedforward import FeedForward


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C), sides multiples of `window_size` -> (B * windows, window_size**2, C), windows row-major."""
    return rearrange(x, "b (h wh) (w ww) c -> (b h w) (wh ww) c", wh=window_size, ww=window_size)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B * windows, window_size**2, C) -> (B, height, width, C)."""
    return rearrange(
        windows,
        "(b h w) (wh ww) c -> b (h wh) (w ww) c",
        h=height // window_size,
        w=width // window_size,
        wh=window_size,
    )


def pad_to_windows(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Zero-pad a (B, H, W, C) map at the bottom and right so both sides are multiples of `window_size`."""
    height, width = x.shape[1:3]
    pad_h, pad_w = -height % window_size, -width % window_size
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h)) if pad_h or pad_w else x


def _shift_regions(length: int, window_size: int, shift_size: int) -> torch.Tensor:
    """Along one axis of a map rolled by -shift_size: which shifted-window piece each position came from.

    The last window of the rolled map holds two pieces, the tail of the map (before the wrap) and the
    `shift_size` positions rolled in from the start; every other window is one piece.
    """
    regions = torch.zeros(length, dtype=torch.long)
    regions[length - window_size :] = 1
    if shift_size:
        regions[length - shift_size :] = 2
    return regions


def window_attention_mask(
    padded_size: tuple[int, int],
    valid_size: tuple[int, int],
    window_size: int,
    shift_size: int,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Which keys each query may attend to: a boolean (windows, M*M, M*M) mask, True = allowed.

    For a map of `valid_size` padded to `padded_size` and rolled by -shift_size: a query sees the keys
    of its own window that came from the same shifted-window piece and are not padding (and always
    itself, so a padding query still has one key).
    """
    (height, width), (valid_h, valid_w) = padded_size, valid_size
    rows = _shift_regions(height, window_size, shift_size)
    cols = _shift_regions(width, window_size, shift_size)
    regions = rows[:, None] * 3 + cols[None, :]
    valid = torch.zeros(height, width, dtype=torch.bool)
    valid[:valid_h, :valid_w] = True
    valid = torch.roll(valid, shifts=(-shift_size, -shift_size), dims=(0, 1))
    region_windows = window_partition(regions[None, :, :, None], window_size).squeeze(-1)
    valid_windows = window_partition(valid[None, :, :, None], window_size).squeeze(-1)
    same_piece = region_windows[:, :, None] == region_windows[:, None, :]
    itself = torch.eye(window_size * window_size, dtype=torch.bool)
    return ((same_piece & valid_windows[:, None, :]) | itself).to(device)


class RelativePositionBias(nn.Module):
    """A learned bias per head for every (query, key) offset inside a window (Swin, HAT).

    Queries lie in a `query_window` x `query_window` window placed at offset (key_window - query_window) // 2
    inside the `key_window` x `key_window` key window (equal sizes for Swin, a larger key window for OCAB).
    """

    def __init__(self, query_window: int, key_window: int, num_heads: int) -> None:
        super().__init__()
        span = query_window + key_window - 1
        self.table = nn.Parameter(torch.zeros(span * span, num_heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        margin = (key_window - query_window) // 2
        query = _grid_coordinates(query_window) + margin
        key = _grid_coordinates(key_window)
        offset = query[:, None, :] - key[None, :, :] + (key_window - 1 - margin)
        self.register_buffer("index", offset[..., 0] * span + offset[..., 1], persistent=False)

    def forward(self) -> torch.Tensor:
        """(heads, query_window**2, key_window**2)."""
        return rearrange(self.table[self.index], "q k h -> h q k")


def _grid_coordinates(size: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=-1)


def windowed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    allowed: torch.Tensor | None,
    dropout: float,
) -> torch.Tensor:
    """Scaled dot-product attention per window.

    q (windows, heads, Nq, d), k and v (windows, heads, Nk, d); bias (heads, Nq, Nk); allowed a boolean
    mask broadcastable to (windows, Nq, Nk), tiled over the batch when it has fewer windows than q.
    """
    attn_mask = None if bias is None else bias.to(q.dtype)
    if allowed is not None:
        allowed = allowed.repeat(q.shape[0] // allowed.shape[0], 1, 1)
        blocked = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill(
            ~allowed, float("-inf")
        )
        attn_mask = blocked[:, None] if attn_mask is None else attn_mask + blocked[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)


class WindowAttention(nn.Module):
    """Multi-head self-attention among the tokens of each window, with an optional relative position bias."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        relative_position_bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = (
            RelativePositionBias(window_size, window_size, num_heads) if relative_position_bias else None
        )

    def forward(self, windows: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """windows (B * windows, M*M, C); allowed (windows, M*M, M*M) booleans or None."""
        q, k, v = rearrange(self.qkv(windows), "n t (three h d) -> three n h t d", three=3, h=self.num_heads)
        bias = self.bias() if self.bias is not None else None
        out = windowed_attention(q, k, v, bias, allowed, self.dropout if self.training else 0.0)
        return self.proj(rearrange(out, "n h t d -> n t (h d)"))


class SwinBlock(nn.Module):
    """Pre-norm (shifted) window attention and a feed-forward, each with a residual, on (B, H, W, C) maps.

    As in Swin, a map that fits in one window is not shifted: there is no border to cross.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        relative_position_bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(
                f"shift_size must be in [0, window_size), got {shift_size} for window {window_size}"
            )
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, relative_position_bias, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), activation="gelu", dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1:3]
        window = self.window_size
        shift = self.shift_size if min(height, width) > window else 0
        tokens = pad_to_windows(self.norm1(x), window)
        padded_size = tokens.shape[1:3]
        allowed = None
        if shift or padded_size != (height, width):
            allowed = window_attention_mask(padded_size, (height, width), window, shift, x.device)
        if shift:
            tokens = torch.roll(tokens, shifts=(-shift, -shift), dims=(1, 2))
        windows = self.attn(window_partition(tokens, window), allowed)
        tokens = window_reverse(windows, window, *padded_size)
        if shift:
            tokens = torch.roll(tokens, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop(tokens[:, :height, :width])
        return x + self.drop(self.mlp(self.norm2(x)))


class OverlappingCrossWindowAttention(nn.Module):
    """HAT's overlapping cross-window attention block (OCAB) on (B, H, W, C) maps.

    Queries come from non-overlapping M x M windows; keys and values from the K x K window centred on each,
    K = M + int(overlap_ratio * M), cut with `unfold` at stride M so neighbouring key windows overlap.
    When K - M is odd the extra row and column go to the bottom and right. Keys outside the map (the
    unfold's zero padding) are masked out.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        overlap_ratio: float = 0.5,
        mlp_ratio: float = 4.0,
        relative_position_bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if overlap_ratio < 0:
            raise ValueError(f"overlap_ratio must be >= 0, got {overlap_ratio}")
        self.num_heads, self.dropout = num_heads, dropout
        self.window_size = window_size
        self.key_window_size = window_size + int(overlap_ratio * window_size)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = (
            RelativePositionBias(window_size, self.key_window_size, num_heads)
            if relative_position_bias
            else None
        )
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), activation="gelu", dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def key_windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C), sides multiples of M -> (B * windows, K*K, C): the key window around each M x M window."""
        extra = self.key_window_size - self.window_size
        before, after = extra // 2, extra - extra // 2
        x = F.pad(rearrange(x, "b h w c -> b c h w"), (before, after, before, after))
        columns = F.unfold(x, kernel_size=self.key_window_size, stride=self.window_size)
        return rearrange(columns, "b (c k) n -> (b n) k c", k=self.key_window_size**2)

    def _split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        return rearrange(tokens, "n t (h d) -> n h t d", h=self.num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1:3]
        q, k, v = pad_to_windows(self.qkv(self.norm1(x)), self.window_size).chunk(3, dim=-1)
        padded_size = q.shape[1:3]
        valid = pad_to_windows(x.new_ones(1, height, width, 1), self.window_size)
        allowed = self.key_windows(valid).squeeze(-1).bool()[:, None, :]
        queries = window_partition(q, self.window_size)
        keys, values = self.key_windows(k), self.key_windows(v)
        out = windowed_attention(
            self._split_heads(queries),
            self._split_heads(keys),
            self._split_heads(values),
            self.bias() if self.bias is not None else None,
            allowed,
            self.dropout if self.training else 0.0,
        )
        out = window_reverse(
            self.proj(rearrange(out, "n h t d -> n t (h d)")), self.window_size, *padded_size
        )
        x = x + self.drop(out[:, :height, :width])
        return x + self.drop(self.mlp(self.norm2(x)))
