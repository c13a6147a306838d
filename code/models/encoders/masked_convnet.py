"""The residual convolutional autoencoder of masked image modelling across eye movements
(Weiler, Brucklacher et al., 2024): its encoder here, its mirrored decoder in
``decoders/conv_reconstruction.py``.

Stage i: ``blocks`` residual blocks of ``channels[i]`` channels, the first with stride 2; so
with channels (32, 64, 128) a 96x96 image becomes 128x12x12. The stages listed in ``outputs``
are announced as feature maps: the last one alone is the autoencoder's code; earlier ones too
can feed the saliency readout like any encoder's maps.
"""

from __future__ import annotations

import torch
from torch import nn

from code.data.batch import Batch
from code.models.base import Encoder, Features
from code.models.shapes import ShapeSpec
from code.registry import ENCODERS
from code.utils.logging import log_shapes, log_signature


class ConvBlock(nn.Module):
    """conv3x3 (stride s) -> ReLU -> conv3x3, plus the input (through a 1x1 conv of stride s
    when the channels or the resolution change), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        changes = in_channels != out_channels or stride != 1
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride) if changes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.skip is None else self.skip(x)
        return torch.relu(self.residual(x) + skip)


@ENCODERS.register("masked_convnet")
class MaskedConvNetEncoder(Encoder):
    """Stages of residual blocks; feature ``stage{i}`` (i in ``outputs``): ``channels[i]``
    channels at stride 2 ** (i + 1).

    The input is taken as it is (in [0, 1], not ImageNet-normalised), as the autoencoder
    reconstructs it through a sigmoid.
    """

    @log_signature
    def __init__(self, channels: list[int], blocks: int, outputs: list[int]) -> None:
        super().__init__()
        if not channels or blocks < 1:
            raise ValueError(f"masked_convnet needs CHANNELS and BLOCKS >= 1, got {channels}")
        if (
            not outputs
            or sorted(set(outputs)) != outputs
            or not 0 <= outputs[0] <= outputs[-1] < len(channels)
        ):
            raise ValueError(
                f"masked_convnet OUTPUTS {outputs}: ascending stage indices in "
                f"0..{len(channels) - 1}, at least one"
            )
        stages, in_channels = [], 3
        for out_channels in channels:
            layers = [ConvBlock(in_channels, out_channels, stride=2)]
            layers += [ConvBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.stages = nn.ModuleList(stages[: outputs[-1] + 1])  # later stages would be unused
        self.output_shapes = {
            f"stage{i}": ShapeSpec(channels=channels[i], stride=2 ** (i + 1)) for i in outputs
        }

    @log_shapes
    def forward(self, image: torch.Tensor, batch: Batch | None = None) -> Features:
        # Batches arrive channels-last (a permuted uint8 array); in that layout this network's
        # backward corrupts the heap on CPU (torch 2.15), in the standard one it does not.
        features, x = {}, image.contiguous()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if f"stage{i}" in self.output_shapes:
                features[f"stage{i}"] = x
        return features
