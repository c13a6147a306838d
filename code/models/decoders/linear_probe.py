"""A linear classifier on an encoder's flattened code: the linear probe of self-supervised
representations (e.g. 128·12·12 → 10 STL-10 classes for the masked ConvNet at 96x96)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from code.data.batch import Batch
from code.models.base import Decoder, Features
from code.models.shapes import FeatureShapes, PredictionKind
from code.registry import DECODERS
from code.utils.logging import log_shapes, log_signature


@DECODERS.register("linear_probe")
class LinearProbe(Decoder):
    """Every announced map brought to ``code_size`` (height, width) by adaptive average pooling
    — nothing changes for a map of that size, as the seed's one 12x12 code at 96x96 —
    flattened and concatenated, one linear layer to ``classes`` logits; trained by
    cross-entropy with ``batch.label``. (Which maps: the encoder's ``OUTPUTS``.)"""

    prediction = PredictionKind.CLASS_LOGITS
    requires = frozenset({"label"})

    @log_signature
    def __init__(self, input_shapes: FeatureShapes, classes: int, code_size: list[int]) -> None:
        super().__init__()
        if classes < 2 or len(code_size) != 2 or min(code_size) < 1:
            raise ValueError(
                f"linear_probe needs CLASSES >= 2 and CODE_SIZE [height, width], got {classes} "
                f"and {code_size}"
            )
        self.code_size = tuple(code_size)
        channels = sum(spec.channels for spec in input_shapes.values())
        self.linear = nn.Linear(channels * math.prod(code_size), classes)

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> torch.Tensor:
        codes = [
            code if tuple(code.shape[-2:]) == self.code_size
            else F.adaptive_avg_pool2d(code, self.code_size)
            for code in features.values()
        ]  # fmt: skip
        return self.linear(torch.cat([code.flatten(1) for code in codes], dim=1))

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        total = F.cross_entropy(prediction.float(), batch.label, reduction="sum")
        return total, torch.tensor(len(batch.label), device=prediction.device)
