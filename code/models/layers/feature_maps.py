"""Bringing feature maps of different strides onto one grid, and normalising their channels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from code.models.shapes import FeatureShapes, PointSpec


def finest_stride(shapes: FeatureShapes) -> int:
    """The smallest stride of ``shapes``, refused if a feature is made per point, not a map."""
    per_point = [name for name, spec in shapes.items() if isinstance(spec, PointSpec)]
    if per_point:
        raise ValueError(
            f"features {per_point} are vectors per point of batch.points, not maps; a map reader "
            "needs an encoder of maps (e.g. MODEL.ENCODER.NAME multires_dense)"
        )
    return min(spec.stride for spec in shapes.values())


def grid_size(image_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """Size of a stride-``stride`` map of an image (maps cover the image rounded up)."""
    return math.ceil(image_hw[0] / stride), math.ceil(image_hw[1] / stride)


def upsample_to_stride(
    x: torch.Tensor, stride: int, target_stride: int, size: tuple[int, int]
) -> torch.Tensor:
    """Upsample a stride-``stride`` map by ``stride / target_stride`` and crop it to ``size``.

    Scaling by the stride ratio (rather than stretching to ``size``) keeps every position aligned
    with the image pixels it covers, also when an encoder padded the image.
    """
    if stride != target_stride:
        x = F.interpolate(
            x, scale_factor=stride / target_stride, mode="bilinear", align_corners=False
        )
    if x.shape[-2] < size[0] or x.shape[-1] < size[1]:
        raise ValueError(
            f"map of {tuple(x.shape[-2:])} cannot cover {size} at stride {target_stride}"
        )
    return x[..., : size[0], : size[1]]


def concat_on_grid(
    features: dict[str, torch.Tensor], shapes: FeatureShapes, stride: int, image_hw: tuple[int, int]
) -> torch.Tensor:
    """All maps of ``shapes`` upsampled to the stride-``stride`` grid of the image, concatenated."""
    size = grid_size(image_hw, stride)
    maps = [
        upsample_to_stride(features[name], spec.stride, stride, size)
        for name, spec in shapes.items()
    ]
    return torch.cat(maps, dim=1)


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of each position of a (B, C, H, W) map, as timm's
    ``LayerNorm2d`` computes it (same parameters and arithmetic; timm's import costs seconds)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)  # fmt: skip
        return x.permute(0, 3, 1, 2)
