"""The block that changes nothing: the "no injection" ablation."""

from __future__ import annotations

from code.data.batch import Batch
from code.models.base import Block, Features
from code.models.shapes import FeatureShapes
from code.registry import BLOCKS


@BLOCKS.register("identity")
class IdentityBlock(Block):
    """Passes the encoder's feature maps on unchanged."""

    def __init__(self, input_shapes: FeatureShapes) -> None:
        super().__init__()
        self.output_shapes = dict(input_shapes)

    def forward(self, features: Features, batch: Batch) -> Features:
        return features
