"""Attention mechanisms: how tokens attend, chosen by ``NAME`` inside the parts that attend (a
``SubPart[ATTENTIONS]`` parameter, e.g. ``MODEL.BLOCK.CROSS_ATTENTION.ATTENTION``).

A mechanism is called with (B, N, C) query tokens laid out row-major on an (H, W) grid, the
part's ``query`` (C -> C) and ``key_value`` (C -> 2C: keys, then values, heads inside each)
projections, and optionally (B, M, C) context tokens with a (B, M) bool mask of those that exist;
without context the queries attend to themselves. It returns the attended values, (B, N, C) with
the heads merged, before the part's output projection.

The part owns its norms and projections, so their parameters keep the part's names in
checkpoints; the mechanism owns what lies between them and decides which tokens the projections
see (spatial reduction shrinks the keys' tokens before the key/value projection, as in PVT).
Every mechanism takes any grid: those that tile or pool it pad what they must and crop back.

Windows and spatial reduction need the keys on the query grid, and cross-covariance needs the
keys to be the queries themselves; they refuse context tokens (``self_attention_only`` says why),
and the parts that attend to context check this when they are built.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from code.registry import ATTENTIONS
from code.utils.logging import get_logger
from code.utils.tensors import bchw_to_bnc, bnc_to_bchw


class Attention(nn.Module):
    """Base of the mechanisms: projections, head split and merge; ``attend`` is the mechanism."""

    # Why the keys must be the query tokens themselves (a sentence); None: any key tokens.
    self_attention_only: ClassVar[str | None] = None

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(
                f"attention: NUM_HEADS {num_heads} does not divide the {channels} channels"
            )
        self.channels = channels
        self.num_heads = num_heads

    def forward(
        self,
        x: torch.Tensor,
        grid: tuple[int, int],
        query: nn.Module,
        key_value: nn.Module,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, N, C) tokens on the (H, W) ``grid`` attend to ``context`` (B, M, C), masked by
        ``context_mask`` (B, M), or to themselves -> (B, N, C)."""
        height, width = grid
        if x.shape[1] != height * width:
            raise ValueError(f"{x.shape[1]} tokens do not lie on a {height}x{width} grid")
        if context is not None and self.self_attention_only:
            raise ValueError(f"this attention mechanism {self.self_attention_only}")
        source = self.key_tokens(x, grid) if context is None else context
        q = rearrange(query(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(key_value(source), "b m (two h d) -> two b h m d", two=2, h=self.num_heads)
        attended = self.attend(q, k, v, grid, context_mask)
        return rearrange(attended, "b h n d -> b n (h d)")

    def key_tokens(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The tokens the keys and values are projected from in self-attention: the queries."""
        return x

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        grid: tuple[int, int],
        key_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Per-head q (B, h, N, d), k and v (B, h, M, d), key mask (B, M) -> (B, h, N, d)."""
        raise NotImplementedError


@ATTENTIONS.register("global")
class GlobalAttention(Attention):
    """Every query attends to every key: softmax(q kᵀ / √d) v, with PyTorch's fused kernels."""

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        grid: tuple[int, int],
        key_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        mask = None if key_mask is None else key_mask[:, None, None]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@ATTENTIONS.register("spatial_reduction")
class SpatialReductionAttention(GlobalAttention):
    """PVT's spatial-reduction attention: global attention to keys and values projected from a
    reduced copy of the token grid, so the cost is N·N/ratio² instead of N².

    ``ratio`` set (``pool_size`` null): PVT v1, a ratio×ratio conv of stride ratio, then
    LayerNorm; ratio 1 reduces nothing (no conv, as in PVT) and is global attention. The grid is
    zero-padded at the bottom and right to a multiple of the ratio, so no token is left out of
    the keys (PVT's own inputs divide evenly). ``pool_size`` set (``ratio`` null): PVT v2's
    linear variant, an adaptive average pool to pool_size × pool_size keys whatever the grid,
    then a 1×1 conv, LayerNorm and GELU: the cost is linear in N.
    """

    self_attention_only = (
        "reduces the query grid to make its keys; context tokens have no grid "
        "(use global or linear)"
    )

    def __init__(
        self, channels: int, num_heads: int, ratio: int | None, pool_size: int | None
    ) -> None:
        super().__init__(channels, num_heads)
        if (ratio is None) == (pool_size is None):
            raise ValueError(
                "spatial_reduction: set exactly one of RATIO (PVT v1 strided conv) and "
                f"POOL_SIZE (PVT v2 pooling), got RATIO {ratio} and POOL_SIZE {pool_size}"
            )
        if ratio is not None and ratio < 1:
            raise ValueError(f"spatial_reduction RATIO must be at least 1, got {ratio}")
        if pool_size is not None and pool_size < 1:
            raise ValueError(f"spatial_reduction POOL_SIZE must be at least 1, got {pool_size}")
        self.ratio = ratio
        self.reduce: nn.Module | None = None
        if pool_size is not None:
            self.reduce = nn.Sequential(
                nn.AdaptiveAvgPool2d(pool_size), nn.Conv2d(channels, channels, kernel_size=1)
            )
        elif ratio > 1:
            self.reduce = nn.Conv2d(channels, channels, kernel_size=ratio, stride=ratio)
        self.norm = None if self.reduce is None else nn.LayerNorm(channels)
        self.activation = nn.GELU() if pool_size is not None else None

    def key_tokens(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if self.reduce is None:
            return x
        tokens = bnc_to_bchw(x, *grid)
        if self.ratio is not None:
            tokens = F.pad(tokens, (0, -grid[1] % self.ratio, 0, -grid[0] % self.ratio))
        reduced = self.norm(bchw_to_bnc(self.reduce(tokens)))
        return reduced if self.activation is None else self.activation(reduced)


@ATTENTIONS.register("linear")
class LinearAttention(Attention):
    """Efficient attention (Shen et al., 2021): ρ_q(q) (ρ_k(k)ᵀ v), where ρ_q is a softmax of each
    query over its features and ρ_k a softmax of each key feature over the tokens. The d×d
    context ρ_k(k)ᵀ v is formed first, so the cost is linear in the number of tokens.

    Masked keys take no part in the softmax over tokens, so they add nothing to the context.
    """

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        grid: tuple[int, int],
        key_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        if key_mask is not None:
            k = k.masked_fill(~key_mask[:, None, :, None], float("-inf"))
        context = torch.einsum("bhmd,bhme->bhde", k.softmax(dim=-2), v)
        return torch.einsum("bhnd,bhde->bhne", q.softmax(dim=-1), context)


@ATTENTIONS.register("cross_covariance")
class CrossCovarianceAttention(Attention):
    """XCiT's cross-covariance attention: each head's d channels attend to each other through the
    d×d softmax(τ · q̂ᵀ k̂), q̂ and k̂ the queries and keys L2-normalised over the tokens, τ a
    learned temperature per head (starting at 1); linear in the number of tokens."""

    self_attention_only = (
        "mixes the channels of each query token with those of the same key token, so the keys "
        "must be the query tokens (use global or linear)"
    )

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__(channels, num_heads)
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        grid: tuple[int, int],
        key_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        q_hat = F.normalize(q, dim=-2)
        k_hat = F.normalize(k, dim=-2)
        channel_attention = (q_hat.transpose(-2, -1) @ k_hat * self.temperature).softmax(dim=-1)
        return v @ channel_attention.transpose(-2, -1)


@ATTENTIONS.register("window")
class WindowAttention(Attention):
    """Swin's W-MSA: attention inside non-overlapping window × window tiles of the grid, with a
    learned relative position bias per head ((2·window − 1)² offsets, truncated-normal σ 0.02).
    With a ``shift_size`` (SW-MSA, set by ``shifted_window``), the grid is first cyclically
    shifted by it up and left, and a mask keeps tokens from either side of the shift's seam apart.

    A grid that the window does not divide is zero-padded at the bottom and right and cropped
    back; padded keys are masked out, so a token's output never depends on the padding (Swin
    lets padded zeros act as keys). A window larger than the grid is clamped to the grid in that
    dimension (logged once), the bias taken from the centre of its table.
    """

    self_attention_only = (
        "tiles the query grid into windows of keys; context tokens have no grid "
        "(use global or linear)"
    )
    name = "window"
    smallest_window = 1

    def __init__(self, channels: int, num_heads: int, window_size: int) -> None:
        super().__init__(channels, num_heads)
        if window_size < self.smallest_window:
            raise ValueError(
                f"{self.name} WINDOW_SIZE must be at least {self.smallest_window}, "
                f"got {window_size}"
            )
        self.window_size = window_size
        self.shift_size = 0
        self.relative_position_bias = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias, std=0.02)
        self._clamp_logged = False

    def windows(self, grid: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """The window (rows, cols) used on ``grid`` and its cyclic shift (rows, cols)."""
        size = self.window_size
        window = (min(size, grid[0]), min(size, grid[1]))
        if window != (size, size) and not self._clamp_logged:
            self._clamp_logged = True
            get_logger().info(
                "%s WINDOW_SIZE %d exceeds the %dx%d token grid: windows of %dx%d there "
                "(logged once)",
                self.name,
                size,
                *grid,
                *window,
            )
        # A window that covers its dimension has nothing to shift across (as in Swin).
        shift = tuple(self.shift_size if w < g else 0 for w, g in zip(window, grid, strict=True))
        return window, shift

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        grid: tuple[int, int],
        key_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        (wh, ww), shift = self.windows(grid)
        height, width = grid
        pad_h, pad_w = -height % wh, -width % ww
        qkv = rearrange(torch.stack([q, k, v]), "t b h (y x) d -> t b h y x d", y=height)
        qkv = F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h))
        # Rolling up and left brings the top rows and left columns to the far end, so the last
        # windows join tokens from both sides of the map; the mask keeps the sides apart.
        qkv = torch.roll(qkv, shifts=(-shift[0], -shift[1]), dims=(3, 4))
        # Windows and heads share one axis, so the 4-d layout of PyTorch's fused kernels holds
        # and the (windows·heads, T, T) bias and mask broadcast over the batch without a copy.
        q, k, v = rearrange(qkv, "t b h (ny wy) (nx wx) d -> t b (ny nx h) (wy wx) d", wy=wh, wx=ww)
        allowed = self._allowed(grid, (wh, ww), shift)
        bias = self._bias(wh, ww).masked_fill(~allowed, -torch.inf).flatten(0, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        out = rearrange(
            out,
            "b (ny nx h) (wy wx) d -> b h (ny wy) (nx wx) d",
            ny=(height + pad_h) // wh,
            nx=(width + pad_w) // ww,
            wy=wh,
        )
        out = torch.roll(out, shifts=shift, dims=(2, 3))[:, :, :height, :width]
        return rearrange(out, "b h y x d -> b h (y x) d")

    def _bias(self, wh: int, ww: int) -> torch.Tensor:
        """(heads, T, T) relative position bias of a wh × ww window, T = wh·ww."""
        device = self.relative_position_bias.device
        rows, cols = torch.meshgrid(
            torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij"
        )
        dy = rows.flatten()[:, None] - rows.flatten()[None, :] + self.window_size - 1
        dx = cols.flatten()[:, None] - cols.flatten()[None, :] + self.window_size - 1
        index = dy * (2 * self.window_size - 1) + dx
        return self.relative_position_bias[index].permute(2, 0, 1)

    def _allowed(
        self, grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]
    ) -> torch.Tensor:
        """(windows, 1, T, T) bool: which key each query of each window may attend to.

        Keys must be real tokens (not padding) from the same side of the cyclic shift's seam.
        Padded queries attend to the padding of their window, so no row is empty (an empty row
        would make NaNs that reach the gradients); their outputs are cropped.
        """
        device = self.relative_position_bias.device
        (height, width), (wh, ww) = grid, window
        rows = torch.arange(height + -height % wh, device=device)
        cols = torch.arange(width + -width % ww, device=device)
        real = (rows[:, None] < height) & (cols[None, :] < width)
        # Rows (columns) before the shift are those the roll carries across the seam.
        side = (rows[:, None] < shift[0]).long() * 2 + (cols[None, :] < shift[1]).long()
        label = torch.where(real, side, -1)  # padding: a side of its own
        label = torch.roll(label, shifts=(-shift[0], -shift[1]), dims=(0, 1))
        label = rearrange(label, "(ny wy) (nx wx) -> (ny nx) (wy wx)", wy=wh, wx=ww)
        return (label[:, :, None] == label[:, None, :])[:, None]


@ATTENTIONS.register("shifted_window")
class ShiftedWindowAttention(WindowAttention):
    """Swin's alternation of W-MSA and SW-MSA, one window mechanism whose shift is wired by
    where its block sits: the block of odd ``block_index`` inside its stage (supplied by the
    part that builds the blocks) shifts its windows by window_size // 2, the block of even index
    not at all, i.e. plain ``window`` attention (Swin's ``shift_size = 0 if i % 2 == 0 else
    window_size // 2``). So a stage of depth 1 has no shifted block."""

    name = "shifted_window"
    smallest_window = 2  # a shift of window // 2 = 0 would shift nothing

    def __init__(self, channels: int, num_heads: int, window_size: int, block_index: int) -> None:
        super().__init__(channels, num_heads, window_size)
        self.shift_size = window_size // 2 if block_index % 2 else 0
