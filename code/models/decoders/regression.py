"""The seed's plain pixel-wise regression head: one linear map from the features to an image."""

from __future__ import annotations

import torch
from torch import nn

from code.data.batch import Batch
from code.models.base import Features
from code.models.decoders.reconstruction import ImageDecoder
from code.models.layers.feature_maps import concat_on_grid, finest_stride, upsample_to_stride
from code.models.shapes import FeatureShapes
from code.registry import DECODERS
from code.utils.logging import log_shapes, log_signature


@DECODERS.register("regression")
class RegressionDecoder(ImageDecoder):
    """All maps brought to the finest stride and concatenated, one linear map (a 1×1 conv) to
    RGB, upsampled (bilinear) to the input, a sigmoid to [0, 1].

    For training an encoder (e.g. the hierarchical transformer) as an autoencoder under the
    ``mim_pretrain`` task: with no hidden layer in the head, what the reconstruction recovers is
    what the encoder's maps keep, where the ``reconstruction`` decoder's hidden convolutions
    learn part of it. Loss: :func:`masked_squared_error` against ``batch.target``.
    """

    @log_signature
    def __init__(self, input_shapes: FeatureShapes) -> None:
        super().__init__()
        self.input_shapes = input_shapes
        self.stride = finest_stride(input_shapes)
        in_channels = sum(spec.channels for spec in input_shapes.values())
        self.to_rgb = nn.Conv2d(in_channels, 3, 1)

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> torch.Tensor:
        image_hw = tuple(batch.input.shape[-2:])
        x = self.to_rgb(concat_on_grid(features, self.input_shapes, self.stride, image_hw))
        return torch.sigmoid(upsample_to_stride(x, self.stride, 1, image_hw))
