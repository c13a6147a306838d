"""Compose encoder -> block -> decoder from the configuration, through the shape handshake."""

from __future__ import annotations

import torch
from torch import nn
from yacs.config import CfgNode

from code.data.batch import Batch
from code.models.base import Block, Decoder, Encoder
from code.registry import BLOCKS, DECODERS, ENCODERS


class GazeModel(nn.Module):
    """The composed model; ``loss`` is the decoder's."""

    def __init__(self, encoder: Encoder, block: Block, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.block = block
        self.decoder = decoder

    @property
    def predicts_log_density(self) -> bool:
        return self.decoder.predicts_log_density

    def forward(self, batch: Batch) -> torch.Tensor:
        features = self.block(self.encoder(batch.image), batch)
        return self.decoder(features, batch)

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder.loss(prediction, batch)


def build_model(cfg: CfgNode) -> GazeModel:
    """Build the parts named in ``cfg.MODEL``; each is built from what the previous announced."""
    node = cfg.MODEL
    encoder = ENCODERS.build(node.ENCODER)
    block = BLOCKS.build(node.BLOCK, input_shapes=encoder.output_shapes)
    decoder = DECODERS.build(node.DECODER, input_shapes=block.output_shapes)
    return GazeModel(encoder, block, decoder)
