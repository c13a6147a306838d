"""A decoder that reconstructs the target image from the features (masked image modelling)."""

from __future__ import annotations

import torch
from torch import nn

from code.data.batch import Batch
from code.models.base import Decoder, Features
from code.models.layers.feature_maps import concat_on_grid, finest_stride, upsample_to_stride
from code.models.shapes import FeatureShapes, PredictionKind
from code.registry import DECODERS
from code.utils.logging import log_shapes, log_signature


class ImageDecoder(Decoder):
    """What the decoders that predict the target image share: an image in [0, 1], trained by
    :func:`masked_squared_error` against ``batch.target``."""

    prediction = PredictionKind.IMAGE
    requires = frozenset({"target"})

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_squared_error(prediction, batch)


@DECODERS.register("reconstruction")
class ReconstructionDecoder(ImageDecoder):
    """Features at the finest stride -> conv -> upsampled to the image -> conv -> RGB in [0, 1].

    Loss: :func:`masked_squared_error` against ``batch.target`` (the clean image, where the
    input stage may have masked the input).
    """

    @log_signature
    def __init__(self, input_shapes: FeatureShapes, hidden_channels: int) -> None:
        super().__init__()
        self.input_shapes = input_shapes
        self.stride = finest_stride(input_shapes)
        in_channels = sum(spec.channels for spec in input_shapes.values())
        self.project = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1), nn.GELU()
        )
        self.to_rgb = nn.Sequential(
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden_channels, 3, 1),
            nn.Sigmoid(),
        )

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> torch.Tensor:
        image_hw = tuple(batch.input.shape[-2:])
        x = self.project(concat_on_grid(features, self.input_shapes, self.stride, image_hw))
        return self.to_rgb(upsample_to_stride(x, self.stride, 1, image_hw))


def masked_squared_error(
    prediction: torch.Tensor, batch: Batch
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ e²·m, Σ m) over pixels and channels, e = prediction − ``batch.target`` and m the
    ``batch.loss_mask`` times the ``batch.foreground`` weights (each 1 everywhere when absent):
    their ratio is the mean squared error where, and as much as, the loss applies."""
    error = (prediction.float() - batch.target.float()) ** 2
    weight = torch.ones_like(error[:, :1])
    if batch.loss_mask is not None:
        weight = weight * batch.loss_mask.float()
    if batch.foreground is not None:
        weight = weight * batch.foreground.float()[:, None]
    weight = weight.expand_as(error)
    return (error * weight).sum(), weight.sum()
