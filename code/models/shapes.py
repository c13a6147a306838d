"""The handshake between parts: what a feature map looks like, announced by whoever makes it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShapeSpec:
    """A named feature map's channel count and stride (input pixels per feature position)."""

    channels: int
    stride: int


FeatureShapes = dict[str, ShapeSpec]
