"""SPADE blocks: feature maps normalised, then modulated per position by the segments.

Each map x becomes ``x̂ · (1 + γ) + β``, where x̂ is x normalised over its channels at every
position with no learned affine (token-wise, like the ViT's own norms), and γ, β come from small
convolutions on a *condition* map:

- ``spade`` (dynamic): the semantic painting of x itself: every position holds the mean feature
  of its segment (DinoGaze-SPADE).
- ``spade_static``: a learned embedding per segment id, painted onto the grid; ids mean the same
  thing in every image only when the segmenter makes them so (e.g. class labels).

The γ and β convolutions start at zero, so training starts from plain normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from code.data.batch import Batch
from code.models.base import Block, Features
from code.models.layers.segments import paint, segment_membership, semantic_painting
from code.models.shapes import FeatureShapes
from code.registry import BLOCKS
from code.utils.logging import log_shapes, log_signature


class SpadeModulation(nn.Module):
    """``x̂ · (1 + γ) + β`` with γ, β from 3x3 convolutions on a condition map."""

    def __init__(self, channels: int, condition_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.shared = nn.Sequential(
            nn.Conv2d(condition_channels, hidden_channels, 3, padding=1), nn.ReLU()
        )
        self.gamma = nn.Conv2d(hidden_channels, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden_channels, channels, 3, padding=1)
        for conv in (self.gamma, self.beta):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        normalized = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2]).permute(0, 3, 1, 2)
        hidden = self.shared(condition)
        return normalized * (1 + self.gamma(hidden)) + self.beta(hidden)


def memberships(features: Features, shapes: FeatureShapes, batch: Batch) -> dict[str, torch.Tensor]:
    """Each map's (B, K, h, w) segment membership, from the batch's label maps."""
    if batch.segments is None:
        raise ValueError("this block needs segment maps in the batch (DATA.SEGMENTS)")
    return {
        name: segment_membership(batch.segments, spec.stride, tuple(features[name].shape[-2:]))
        for name, spec in shapes.items()
    }


@BLOCKS.register("spade")
class SpadeBlock(Block):
    """Dynamic SPADE: every map modulated by its own semantic painting."""

    requires = frozenset({"segments"})

    @log_signature
    def __init__(self, input_shapes: FeatureShapes, hidden_channels: int) -> None:
        super().__init__()
        self.input_shapes = input_shapes
        self.output_shapes = dict(input_shapes)
        self.modulations = nn.ModuleDict(
            {
                name: SpadeModulation(spec.channels, spec.channels, hidden_channels)
                for name, spec in input_shapes.items()
            }
        )

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> Features:
        members = memberships(features, self.input_shapes, batch)
        return {
            name: self.modulations[name](x, semantic_painting(x, members[name]).to(x.dtype))
            for name, x in features.items()
        }


@BLOCKS.register("spade_static")
class StaticSpadeBlock(Block):
    """Static SPADE: the condition is a learned ``embedding_channels`` vector per segment id."""

    requires = frozenset({"segments"})

    @log_signature
    def __init__(
        self,
        input_shapes: FeatureShapes,
        hidden_channels: int,
        num_segment_ids: int,
        embedding_channels: int,
    ) -> None:
        super().__init__()
        self.input_shapes = input_shapes
        self.output_shapes = dict(input_shapes)
        self.embedding = nn.Embedding(num_segment_ids, embedding_channels)
        self.modulations = nn.ModuleDict(
            {
                name: SpadeModulation(spec.channels, embedding_channels, hidden_channels)
                for name, spec in input_shapes.items()
            }
        )

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> Features:
        members = memberships(features, self.input_shapes, batch)
        num_ids = self.embedding.num_embeddings
        largest = int(batch.segments.max())
        if largest >= num_ids:
            raise ValueError(
                f"segment id {largest} found, but MODEL.BLOCK.SPADE_STATIC.NUM_SEGMENT_IDS is "
                f"{num_ids}; raise it or segment into fewer parts"
            )
        table = self.embedding.weight[None, : largest + 1].expand(len(batch), -1, -1)
        return {
            name: self.modulations[name](x, paint(table, members[name]).to(x.dtype))
            for name, x in features.items()
        }
