"""SegFormer's all-MLP decoder (Xie et al., 2021) read out to a log-density."""

from __future__ import annotations

import torch
from torch import nn

from code.data.batch import Batch
from code.models.base import Features
from code.models.decoders.finalizer import Finalizer, LogDensityDecoder
from code.models.layers.feature_maps import (
    LayerNorm2d,
    finest_stride,
    grid_size,
    upsample_to_stride,
)
from code.models.shapes import FeatureShapes
from code.registry import DECODERS, ConfigError
from code.utils.logging import log_shapes, log_signature


@DECODERS.register("all_mlp")
class AllMlpDecoder(LogDensityDecoder):
    """Each map projected by its own linear map (a 1×1 conv) to ``embed_channels``, upsampled
    (bilinear) to the finest map's grid, all concatenated and fused by a linear map to
    ``embed_channels`` with a channel LayerNorm and ReLU, then a linear map to one channel that
    the saliency finalizer turns into a log-density (``blur_sigma``, ``learn_blur``,
    ``centerbias_weight``).

    SegFormer fuses with BatchNorm; the channel LayerNorm here does not depend on the batch,
    whose items share one image size and are few at full resolution. Its dropout before the
    classifier is left out (the finalizer's blur regularises the readout).
    Loss: negative log-likelihood of the batch's fixations in bits (per fixation).
    """

    @log_signature
    def __init__(
        self,
        input_shapes: FeatureShapes,
        embed_channels: int,
        blur_sigma: float,
        learn_blur: bool,
        centerbias_weight: float,
    ) -> None:
        super().__init__()
        if embed_channels < 1:
            raise ConfigError(
                f"MODEL.DECODER.ALL_MLP.EMBED_CHANNELS must be at least 1, got {embed_channels}"
            )
        self.input_shapes = input_shapes
        self.stride = finest_stride(input_shapes)
        self.project = nn.ModuleDict(
            {name: nn.Conv2d(s.channels, embed_channels, 1) for name, s in input_shapes.items()}
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(len(input_shapes) * embed_channels, embed_channels, 1, bias=False),
            LayerNorm2d(embed_channels),
            nn.ReLU(),
        )
        self.readout = nn.Conv2d(embed_channels, 1, 1)
        self.finalizer = Finalizer(self.stride, blur_sigma, learn_blur, centerbias_weight)

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> torch.Tensor:
        size = grid_size(tuple(batch.input.shape[-2:]), self.stride)
        # Projecting before upsampling (as SegFormer) upsamples embed_channels, not the widths.
        maps = [
            upsample_to_stride(self.project[name](features[name]), spec.stride, self.stride, size)
            for name, spec in self.input_shapes.items()
        ]
        return self.finalizer(self.readout(self.fuse(torch.cat(maps, dim=1))), batch.centerbias)
