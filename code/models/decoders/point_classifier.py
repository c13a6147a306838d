"""Fixated or not, for each point of ``batch.points``: Mr-CNN's fusion layers on the features
at the points, trained by binary cross-entropy with ``batch.point_labels``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from code.data.batch import Batch
from code.models.base import Decoder, Features
from code.models.shapes import FeatureShapes, PointSpec, PredictionKind
from code.registry import DECODERS
from code.utils.logging import log_shapes, log_signature


def features_at_points(feature: torch.Tensor, stride: int, points: torch.Tensor) -> torch.Tensor:
    """(B, C, P): a stride-``stride`` map read bilinearly at (B, P, 2) input-pixel points
    (map position k covers input pixels [k·stride, (k+1)·stride))."""
    height, width = feature.shape[-2:]
    scale = points.new_tensor([2 / (width * stride), 2 / (height * stride)])
    grid = (points * scale - 1)[:, :, None].to(feature.dtype)  # (B, P, 1, 2)
    sampled = F.grid_sample(feature, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)  # fmt: skip
    return sampled[..., 0]


@DECODERS.register("point_classifier")
class PointClassifier(Decoder):
    """Every input feature taken at the points (vectors per point as they are, maps read
    bilinearly), concatenated, then a fully connected layer of ``hidden_channels``, ReLU,
    dropout and one logit per point (Mr-CNN: FC512 over the three streams' features)."""

    prediction = PredictionKind.POINT_LOGITS
    requires = frozenset({"points", "point_labels"})

    @log_signature
    def __init__(self, input_shapes: FeatureShapes, hidden_channels: int, dropout: float) -> None:
        super().__init__()
        self.input_shapes = input_shapes
        channels = sum(spec.channels for spec in input_shapes.values())
        self.fusion = nn.Sequential(
            nn.Linear(channels, hidden_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_channels, 1),
        )

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> torch.Tensor:
        vectors = [
            features[name]
            if isinstance(spec, PointSpec)
            else features_at_points(features[name], spec.stride, batch.points)
            for name, spec in self.input_shapes.items()
        ]
        return self.fusion(torch.cat(vectors, dim=1).transpose(1, 2))[..., 0]

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        total = F.binary_cross_entropy_with_logits(
            prediction.float(), batch.point_labels.float(), reduction="sum"
        )
        return total, torch.tensor(batch.point_labels.numel(), device=prediction.device)
