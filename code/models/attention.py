"""Attention mechanisms: how queries attend to keys, chosen by ``NAME`` inside the parts that
attend (a ``SubPart[ATTENTIONS]`` parameter, e.g. ``MODEL.BLOCK.CROSS_ATTENTION.ATTENTION``).

A mechanism takes per-head queries, keys and values, (B, heads, N, d), (B, heads, M, d) and
(B, heads, M, d), and an optional (B, M) bool mask of the keys that exist; projections, norms and
residuals belong to the part that uses it. It is built with the ``channels`` and ``num_heads``
of that part (a mechanism with weights of its own needs them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from code.registry import ATTENTIONS


class Attention(nn.Module):
    """q (B, h, N, d), k and v (B, h, M, d), key mask (B, M) or None -> (B, h, N, d)."""

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError


@ATTENTIONS.register("global")
class GlobalAttention(Attention):
    """Every query attends to every key: softmax(q kᵀ / √d) v, with PyTorch's fused kernels."""

    def __init__(self) -> None:
        super().__init__()

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        mask = None if key_mask is None else key_mask[:, None, None]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
