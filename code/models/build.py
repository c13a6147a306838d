"""Compose input stage -> encoder -> block -> decoder from the configuration, through the shape
handshake."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from code.data.batch import Batch
from code.data.centerbias import CenterBias
from code.data.segments import Segmenter
from code.models.base import Block, Decoder, Encoder, InputStage, Part
from code.models.shapes import PredictionKind
from code.registry import BLOCKS, DECODERS, ENCODERS, INPUT_STAGES, SEGMENTERS

# The model parts, by their node under MODEL, in the order data flows through them.
MODEL_PARTS = ("INPUT_STAGE", "ENCODER", "BLOCK", "DECODER")


class GazeModel(nn.Module):
    """The composed model: ``model(batch)`` returns the prediction and the batch it was made from
    (after the input stage, which the loss needs: e.g. where a mask lets it apply); ``loss`` is
    the decoder's.

    It also carries the centre-bias density fitted on its training images (``set_centerbias``),
    so a checkpoint alone can predict on new images.
    """

    def __init__(
        self, input_stage: InputStage, encoder: Encoder, block: Block, decoder: Decoder
    ) -> None:
        super().__init__()
        self.input_stage = input_stage
        self.encoder = encoder
        self.block = block
        self.decoder = decoder
        grid = CenterBias.GRID
        self.register_buffer("centerbias_density", torch.zeros(grid, grid, dtype=torch.float64))

    @property
    def prediction(self) -> PredictionKind:
        return self.decoder.prediction

    def parts(self) -> dict[str, Part]:
        """The parts by their configuration node, e.g. ``{"ENCODER": ..., ...}``."""
        modules = (self.input_stage, self.encoder, self.block, self.decoder)
        return dict(zip(MODEL_PARTS, modules, strict=True))

    def set_centerbias(self, centerbias: CenterBias) -> None:
        self.centerbias_density.copy_(torch.from_numpy(centerbias.density))

    def centerbias(self, bandwidth: float, uniform_weight: float) -> CenterBias:
        """The stored centre bias (``DATA.CENTERBIAS`` of the run gives its parameters)."""
        centerbias = CenterBias(bandwidth, uniform_weight)
        centerbias.density = self.centerbias_density.cpu().numpy().astype(np.float64)
        return centerbias

    def features(self, batch: Batch) -> tuple[dict[str, torch.Tensor], Batch]:
        """The block's feature maps and the batch after the input stage (what the decoder reads)."""
        batch = self.input_stage(batch)
        return self.block(self.encoder(batch.input, batch), batch), batch

    def forward(self, batch: Batch) -> tuple[torch.Tensor, Batch]:
        features, batch = self.features(batch)
        return self.decoder(features, batch), batch

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder.loss(prediction, batch)

    @torch.no_grad()
    def constrain(self) -> None:
        """Every part's weight constraints, after an optimizer step."""
        for part in self.parts().values():
            part.constrain()


def build_model(cfg: CfgNode) -> GazeModel:
    """Build the parts named in ``cfg.MODEL``; each is built from what the previous announced
    (the decoder also from the encoder's attention mechanism, which it may continue)."""
    node = cfg.MODEL
    input_stage = INPUT_STAGES.build(node.INPUT_STAGE)
    encoder = ENCODERS.build(node.ENCODER)
    block = BLOCKS.build(node.BLOCK, input_shapes=encoder.output_shapes)
    decoder = DECODERS.build(
        node.DECODER, input_shapes=block.output_shapes, encoder_attention=encoder.attention
    )
    return GazeModel(input_stage, encoder, block, decoder)


class SeededEncoder:
    """Builds the configured encoder with the run's seed (for k-means segments); its repr is
    the encoder's configuration, which keys the cache."""

    def __init__(self, cfg: CfgNode) -> None:
        self.node = cfg.MODEL.ENCODER
        self.seed = cfg.SEED

    def __call__(self) -> torch.nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return ENCODERS.build(self.node)

    def __repr__(self) -> str:
        return f"seed {self.seed}: {self.node.dump(sort_keys=True)}"


def build_segmenter(cfg: CfgNode) -> Segmenter | None:
    """The segmenter ``DATA.SEGMENTS`` names (k-means runs the configured encoder), or None."""
    return SEGMENTERS.build(cfg.DATA.SEGMENTS, encoder=SeededEncoder(cfg))
