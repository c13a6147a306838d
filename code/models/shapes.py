"""The handshake between parts: what a feature map looks like, announced by whoever makes it, and
what kind of prediction a decoder makes, announced to everything downstream."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class ShapeSpec:
    """A named feature map's channel count and stride (input pixels per feature position)."""

    channels: int
    stride: int


@dataclass(frozen=True)
class PointSpec:
    """Named features made per point of ``batch.points`` rather than over the image: (B, C, P)
    vectors of ``channels`` (e.g. of crops centred on the points). Only point readers take them;
    a map reader refuses them (``finest_stride``)."""

    channels: int


FeatureShapes = dict[str, ShapeSpec | PointSpec]


class PredictionKind(Enum):
    """What a decoder's prediction is; evaluation, validation, overlays and ``code.predict``
    dispatch on it, never on a tensor's dimensions."""

    LOG_DENSITY = "log-density"  # (B, H, W) natural-log density over the input's pixels
    # (B, N, H, W): for each fixation of an item, the density of it given the ones before
    CONDITIONAL_LOG_DENSITY = "conditional log-density"
    # (B, H, W) unnormalised, higher is more salient: scored with the metrics that need no
    # density (``code.evaluate``'s kind ``saliency-map``), taken to the original size bicubically
    SALIENCY_MAP = "saliency map"
    IMAGE = "image"  # (B, 3, H, W) in [0, 1], e.g. a reconstruction of the target
    CLASS_LOGITS = "class logits"  # (B, K) unnormalised log-probabilities of K classes
    POINT_LOGITS = "point logits"  # (B, P) logit that each point of ``batch.points`` is fixated

    @property
    def is_density(self) -> bool:
        """A (conditional) log-density over pixels: scored with the saliency metrics."""
        return self in (PredictionKind.LOG_DENSITY, PredictionKind.CONDITIONAL_LOG_DENSITY)
