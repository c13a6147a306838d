"""Layout helpers: maps are (B, C, H, W), tokens are (B, N, C)."""

from __future__ import annotations

import torch
from einops import rearrange


def bchw_to_bnc(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map -> (B, H*W, C) tokens, row-major over positions."""
    return rearrange(x, "b c h w -> b (h w) c")


def bnc_to_bchw(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) map; inverse of ``bchw_to_bnc``."""
    if x.shape[1] != height * width:
        raise ValueError(f"{x.shape[1]} tokens cannot be laid out as {height}x{width}")
    return rearrange(x, "b (h w) c -> b c h w", h=height, w=width)
