"""What each kind of part promises the others.

Data flows one way: ``Batch`` -> input stage -> encoder -> block -> decoder -> (prediction,
loss). The input stage makes what the encoder sees (``batch.input``) and may add to the batch
(e.g. where a loss applies); an encoder announces its feature maps in ``output_shapes``; blocks
and decoders are built from the shapes they receive (``input_shapes``), a block announces what it
passes on, and a decoder announces the kind of its prediction (``prediction``). An encoder whose
blocks attend also announces their mechanism (``attention``), and a decoder that attends takes it
(``encoder_attention``): one ``ATTENTION`` key decides how the whole model attends.
"""

from __future__ import annotations

import torch
from torch import nn

from code.data.batch import Batch
from code.models.shapes import FeatureShapes, PredictionKind
from code.registry import PartFactory

Features = dict[str, torch.Tensor]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Part(nn.Module):
    """What every part shares: ``requires`` names the optional ``Batch`` fields it reads
    (e.g. ``segments``); the model refuses to build when the run's data lacks them."""

    requires: frozenset[str] = frozenset()

    def constrain(self) -> None:
        """Project the weights back onto the part's constraints (e.g. a max-norm); the trainer
        calls it after every optimizer step. Nothing by default."""


class InputStage(Part):
    """Batch -> the batch the encoder and decoder see (its ``input`` changed, fields added)."""

    def forward(self, batch: Batch) -> Batch:
        raise NotImplementedError


class Encoder(Part):
    """Image (B, 3, H, W) in [0, 1] (+ the batch, for side information) -> named features
    described by ``output_shapes``: maps (``ShapeSpec``) or vectors per point (``PointSpec``).

    One contract for every encoder: ``forward(image, batch=None)``. The model passes the image
    it encodes (``batch.input``) and the batch it came from, after the input stage; an encoder
    reads in ``batch`` only the fields it lists in ``requires`` (e.g. ``points``: Mr-CNN's
    crops around them), which the model checks the run's data provides. An encoder that requires
    nothing reads only the image, so callers that hold just images (k-means segments, codes,
    NeVA's downstream model) call ``encoder(image)``.

    ``attention``: the configured mechanism the encoder's transformer blocks attend with, which
    the builder hands to the decoder (``encoder_attention``) so that a decoder continuing the
    encoder (the U-shaped one) attends alike; None for encoders without a configurable one.
    """

    output_shapes: FeatureShapes
    attention: PartFactory | None = None

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, batch: Batch | None = None) -> Features:
        raise NotImplementedError

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """ImageNet normalisation, which every pretrained backbone here expects."""
        return (image - self.mean) / self.std


class Block(Part):
    """Feature maps (+ the batch, for side information) -> feature maps of ``output_shapes``."""

    output_shapes: FeatureShapes


class Decoder(Part):
    """Feature maps (+ the batch) -> a prediction of kind ``prediction``; owns its loss."""

    prediction: PredictionKind

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the loss over its items, number of items), so ranks and steps average exactly."""
        raise NotImplementedError
