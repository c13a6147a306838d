"""The transformer block of the hierarchical encoders (and of the decoders that continue them):
pre-norm attention with any mechanism of ``code.models.attention``, then a feed-forward network,
both residual, on (B, N, C) tokens laid out on an (H, W) grid."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from code.models.attention import Attention
from code.utils.tensors import bchw_to_bnc, bnc_to_bchw

FeedForwardKind = Literal["mlp", "mix_ffn"]


class Mlp(nn.Module):
    """ViT's and Swin's feed-forward network: Linear -> GELU -> Linear, token by token."""

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(hidden_channels, channels)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) tokens (the grid is not needed) -> (B, N, C)."""
        return self.fc2(self.activation(self.fc1(x)))


class MixFFN(nn.Module):
    """SegFormer's Mix-FFN (PVT v2's convolutional FFN): Linear -> 3×3 depthwise conv on the
    token grid -> GELU -> Linear. The zero-padded conv tells each token where it lies, which is
    why these encoders need no position embedding."""

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.depthwise = nn.Conv2d(
            hidden_channels, hidden_channels, kernel_size=3, padding=1, groups=hidden_channels
        )
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(hidden_channels, channels)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) tokens on the (H, W) ``grid`` -> (B, N, C)."""
        hidden = bchw_to_bnc(self.depthwise(bnc_to_bchw(self.fc1(x), *grid)))
        return self.fc2(self.activation(hidden))


def feed_forward(kind: FeedForwardKind, channels: int, hidden_channels: int) -> nn.Module:
    """The feed-forward network ``kind`` names (``FFN`` in the configs that choose it)."""
    networks = {"mlp": Mlp, "mix_ffn": MixFFN}
    if kind not in networks:
        raise ValueError(f"unknown FFN {kind!r}; one of {', '.join(networks)}")
    return networks[kind](channels, hidden_channels)


class TransformerBlock(nn.Module):
    """x + proj(attention(norm(x))), then x + ffn(norm(x)) (pre-norm, as Swin, PVT v2 and
    SegFormer). The block owns the norms and the query, key/value and output projections; the
    mechanism decides how the projected tokens meet.

    ``stage_idx`` says how deep in the architecture the block is: the stage of an encoder
    (0, 1, 2, 3), continued by a U-shaped decoder on the way back up (2, 1, 0), so a block at the
    same resolution on either side carries the same number.
    """

    def __init__(
        self,
        channels: int,
        attention: Attention,
        ffn: FeedForwardKind,
        hidden_channels: int,
        stage_idx: int,
    ) -> None:
        super().__init__()
        self.stage_idx = stage_idx
        self.norm_attention = nn.LayerNorm(channels)
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(channels, 2 * channels)
        self.attention = attention
        self.proj = nn.Linear(channels, channels)
        self.norm_ffn = nn.LayerNorm(channels)
        self.ffn = feed_forward(ffn, channels, hidden_channels)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) tokens on the (H, W) ``grid`` -> (B, N, C)."""
        attended = self.attention(self.norm_attention(x), grid, self.query, self.key_value)
        x = x + self.proj(attended)
        return x + self.ffn(self.norm_ffn(x), grid)

    def extra_repr(self) -> str:
        return f"stage_idx={self.stage_idx}"


def init_linear(module: nn.Module) -> None:
    """Linear layers as Swin, PVT v2 and SegFormer start them: truncated normal σ 0.02, bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
