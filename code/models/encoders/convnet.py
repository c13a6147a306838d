"""A small convolutional encoder: one stage per entry of ``channels``, each halving resolution."""

from __future__ import annotations

import torch
from torch import nn

from code.data.batch import Batch
from code.models.base import Encoder, Features
from code.models.shapes import ShapeSpec
from code.registry import ENCODERS
from code.utils.logging import log_shapes, log_signature


def conv_norm_act(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(8, out_channels), out_channels),
        nn.GELU(),
    )


@ENCODERS.register("convnet")
class ConvNetEncoder(Encoder):
    """Stages of (3x3 stride-2 conv, 3x3 conv), GroupNorm + GELU; every stage's output is a map.

    Feature ``stage{i}`` has ``channels[i]`` channels at stride ``2 ** (i + 1)``.
    """

    @log_signature
    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        if not channels:
            raise ValueError("convnet needs at least one stage in CHANNELS")
        stages, in_channels = [], 3
        for out_channels in channels:
            stages.append(
                nn.Sequential(
                    conv_norm_act(in_channels, out_channels, stride=2),
                    conv_norm_act(out_channels, out_channels, stride=1),
                )
            )
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.output_shapes = {
            f"stage{i}": ShapeSpec(channels=c, stride=2 ** (i + 1)) for i, c in enumerate(channels)
        }

    @log_shapes
    def forward(self, image: torch.Tensor, batch: Batch | None = None) -> Features:
        x = self.normalize(image)
        features = {}
        for name, stage in zip(self.output_shapes, self.stages, strict=True):
            x = stage(x)
            features[name] = x
        return features
