"""Image tokens attend to segment tokens: the cross-attention alternative to SPADE."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from code.data.batch import Batch
from code.models.attention import Attention
from code.models.base import Block, Features
from code.models.blocks.spade import memberships
from code.models.layers.segments import segment_means, segment_present
from code.models.shapes import FeatureShapes
from code.registry import ATTENTIONS, BLOCKS, SubPart
from code.utils.logging import log_shapes, log_signature
from code.utils.tensors import bchw_to_bnc, bnc_to_bchw


class SegmentCrossAttention(nn.Module):
    """Pre-norm multi-head cross-attention, residual; the output projection starts at zero."""

    def __init__(self, channels: int, num_heads: int, attention: Attention) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm_query = nn.LayerNorm(channels)
        self.norm_context = nn.LayerNorm(channels)
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(channels, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.attention = attention

    def forward(
        self, tokens: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, N, C) tokens, (B, K, C) context, (B, K) bool mask of real context -> (B, N, C)."""
        heads = self.num_heads
        q = rearrange(self.query(self.norm_query(tokens)), "b n (h d) -> b h n d", h=heads)
        k, v = rearrange(
            self.key_value(self.norm_context(context)),
            "b k (two h d) -> two b h k d",
            two=2,
            h=heads,
        )
        attended = self.attention(q, k, v, context_mask)
        return tokens + self.out(rearrange(attended, "b h n d -> b n (h d)"))


@BLOCKS.register("cross_attention")
class SegmentCrossAttentionBlock(Block):
    """Every map's positions (queries) attend to its segment tokens (mean feature per segment),
    with the attention mechanism ``attention`` (``global``: every segment)."""

    requires = frozenset({"segments"})

    @log_signature
    def __init__(
        self, input_shapes: FeatureShapes, num_heads: int, attention: SubPart[ATTENTIONS]
    ) -> None:
        super().__init__()
        for name, spec in input_shapes.items():
            if spec.channels % num_heads:
                raise ValueError(
                    f"cross_attention NUM_HEADS {num_heads} does not divide the {spec.channels} "
                    f"channels of feature map {name!r}"
                )
        self.input_shapes = input_shapes
        self.output_shapes = dict(input_shapes)
        self.attention = nn.ModuleDict(
            {
                name: SegmentCrossAttention(
                    spec.channels,
                    num_heads,
                    attention(channels=spec.channels, num_heads=num_heads),
                )
                for name, spec in input_shapes.items()
            }
        )

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> Features:
        members = memberships(features, self.input_shapes, batch)
        out = {}
        for name, x in features.items():
            context = segment_means(x, members[name]).to(x.dtype)
            tokens = self.attention[name](bchw_to_bnc(x), context, segment_present(members[name]))
            out[name] = bnc_to_bchw(tokens, *x.shape[-2:])
        return out
