"""The mirrored decoder of the masked-image-modelling autoencoder: from the encoder's coarsest
map back to the image, through residual blocks and stride-2 transposed convolutions, ending in a
sigmoid (RGB in [0, 1])."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from code.data.batch import Batch
from code.models.base import Features
from code.models.decoders.reconstruction import ImageDecoder
from code.models.encoders.masked_convnet import ConvBlock
from code.models.shapes import FeatureShapes
from code.registry import DECODERS
from code.utils.logging import log_shapes, log_signature


@DECODERS.register("conv_reconstruction")
class ConvReconstructionDecoder(ImageDecoder):
    """For each entry of ``channels`` (coarse to fine): ``blocks`` residual blocks, then a
    stride-2 transposed conv to the next entry's channels (3 after the last). Fed every map it
    receives on the coarsest map's grid (finer ones average-pooled to it, concatenated, and
    1x1-projected to ``channels[0]`` unless that is already their channel count); the
    autoencoder's own layout (its code alone, stride 2 ** len(channels)) gives the image's size
    exactly, other encoders' outputs are resized to it (bilinear). Loss: squared error where
    ``batch.loss_mask`` is 1 (everywhere without a mask), averaged over those pixels and
    channels."""

    @log_signature
    def __init__(self, input_shapes: FeatureShapes, channels: list[int], blocks: int) -> None:
        super().__init__()
        if not channels or blocks < 0:
            raise ValueError(f"conv_reconstruction needs CHANNELS and BLOCKS >= 0: {channels}")
        self.coarsest = max(input_shapes, key=lambda name: input_shapes[name].stride)
        total = sum(spec.channels for spec in input_shapes.values())
        self.project = nn.Identity() if total == channels[0] else nn.Conv2d(total, channels[0], 1)
        layers: list[nn.Module] = []
        for i, width in enumerate(channels):
            layers += [ConvBlock(width, width, 1) for _ in range(blocks)]
            out = channels[i + 1] if i + 1 < len(channels) else 3
            layers.append(nn.ConvTranspose2d(width, out, 4, stride=2, padding=1))
            if i + 1 < len(channels):
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> torch.Tensor:
        grid = features[self.coarsest].shape[-2:]
        maps = [F.adaptive_avg_pool2d(x, grid) if x.shape[-2:] != grid else x
                for x in features.values()]  # fmt: skip
        logits = self.layers(self.project(torch.cat(maps, dim=1)))
        height, width = batch.input.shape[-2:]
        if logits.shape[-2] >= height and logits.shape[-1] >= width:
            logits = logits[..., :height, :width]  # sizes that are not a multiple of the stride
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)
