"""Image tokens attend to segment tokens: the cross-attention alternative to SPADE."""

from __future__ import annotations

import torch
from torch import nn

from code.data.batch import Batch
from code.models.attention import Attention
from code.models.base import Block, Features
from code.models.blocks.spade import memberships
from code.models.layers.segments import segment_means, segment_present
from code.models.shapes import FeatureShapes
from code.registry import ATTENTIONS, BLOCKS, ConfigError, SubPart
from code.utils.logging import log_shapes, log_signature
from code.utils.tensors import bchw_to_bnc, bnc_to_bchw


class SegmentCrossAttention(nn.Module):
    """Pre-norm multi-head cross-attention, residual; the output projection starts at zero.

    It owns the norms and projections (``attention`` decides how the projected tokens meet),
    created in this order so that the parameters, their initialisation and their checkpoint
    names are those of the block before attention mechanisms took tokens.
    """

    def __init__(self, channels: int, attention: Attention) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(channels)
        self.norm_context = nn.LayerNorm(channels)
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(channels, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.attention = attention

    def forward(
        self,
        tokens: torch.Tensor,
        grid: tuple[int, int],
        context: torch.Tensor,
        context_mask: torch.Tensor,
    ) -> torch.Tensor:
        """(B, N, C) tokens on an (H, W) grid, (B, K, C) context, (B, K) bool mask of real
        context -> (B, N, C)."""
        attended = self.attention(
            self.norm_query(tokens),
            grid,
            self.query,
            self.key_value,
            context=self.norm_context(context),
            context_mask=context_mask,
        )
        return tokens + self.out(attended)


@BLOCKS.register("cross_attention")
class SegmentCrossAttentionBlock(Block):
    """Every map's positions (queries) attend to its segment tokens (mean feature per segment),
    with the attention mechanism ``attention``: ``global`` (softmax over every segment) or
    ``linear``. The segment tokens are a set, not a grid, so the mechanisms that need their keys
    on the query grid (windows, spatial reduction) or to be the queries (cross-covariance) are
    refused when the block is built."""

    requires = frozenset({"segments"})

    @log_signature
    def __init__(
        self, input_shapes: FeatureShapes, num_heads: int, attention: SubPart[ATTENTIONS]
    ) -> None:
        super().__init__()
        refusal = ATTENTIONS.get(attention.name).self_attention_only
        if refusal:
            raise ConfigError(
                f"MODEL.BLOCK.CROSS_ATTENTION.ATTENTION.NAME {attention.name!r}: the keys of "
                f"cross_attention are segment tokens, and {attention.name} {refusal}"
            )
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
                    spec.channels, attention(channels=spec.channels, num_heads=num_heads)
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
            grid = (x.shape[-2], x.shape[-1])
            tokens = self.attention[name](
                bchw_to_bnc(x), grid, context, segment_present(members[name])
            )
            out[name] = bnc_to_bchw(tokens, *grid)
        return out
