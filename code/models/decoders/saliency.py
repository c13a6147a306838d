"""The saliency readout (DeepGaze style): features -> one map -> finalizer -> log-density."""

from __future__ import annotations

import torch
from torch import nn

from code.data.batch import Batch
from code.models.base import Features
from code.models.decoders.finalizer import Finalizer, LogDensityDecoder
from code.models.layers.feature_maps import LayerNorm2d, concat_on_grid, finest_stride
from code.models.shapes import FeatureShapes
from code.registry import DECODERS
from code.utils.logging import log_shapes, log_signature


def readout_network(in_channels: int, hidden_channels: list[int]) -> nn.Sequential:
    """1x1 convolutions with channel-wise layer norm and softplus, ending in one channel."""
    layers: list[nn.Module] = [LayerNorm2d(in_channels)]
    for out_channels in hidden_channels:
        layers += [
            nn.Conv2d(in_channels, out_channels, 1),
            nn.Softplus(),
            LayerNorm2d(out_channels),
        ]
        in_channels = out_channels
    layers.append(nn.Conv2d(in_channels, 1, 1))
    return nn.Sequential(*layers)


@DECODERS.register("saliency")
class SaliencyDecoder(LogDensityDecoder):
    """All input maps, brought to the finest stride and concatenated, read out to a log-density.

    Loss: negative log-likelihood of the batch's fixations in bits (per fixation).
    """

    @log_signature
    def __init__(
        self,
        input_shapes: FeatureShapes,
        hidden_channels: list[int],
        blur_sigma: float,
        learn_blur: bool,
        centerbias_weight: float,
    ) -> None:
        super().__init__()
        self.input_shapes = input_shapes
        self.stride = finest_stride(input_shapes)
        in_channels = sum(spec.channels for spec in input_shapes.values())
        self.readout = readout_network(in_channels, hidden_channels)
        self.finalizer = Finalizer(self.stride, blur_sigma, learn_blur, centerbias_weight)

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> torch.Tensor:
        image_hw = tuple(batch.input.shape[-2:])
        x = concat_on_grid(features, self.input_shapes, self.stride, image_hw)
        return self.finalizer(self.readout(x), batch.centerbias)
