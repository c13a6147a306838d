"""Compose encoder -> block -> decoder from the configuration, through the shape handshake."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from code.config import ConfigError
from code.data.batch import Batch
from code.data.build import batch_fields
from code.metrics.baselines import CenterBias
from code.models.base import Block, Decoder, Encoder
from code.registry import BLOCKS, DECODERS, ENCODERS


class GazeModel(nn.Module):
    """The composed model; ``loss`` is the decoder's.

    It also carries the centre-bias density fitted on its training images (``set_centerbias``),
    so a checkpoint alone can predict on new images.
    """

    def __init__(self, encoder: Encoder, block: Block, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.block = block
        self.decoder = decoder
        grid = CenterBias.GRID
        self.register_buffer("centerbias_density", torch.zeros(grid, grid, dtype=torch.float64))

    @property
    def predicts_log_density(self) -> bool:
        return self.decoder.predicts_log_density

    @property
    def requires(self) -> frozenset[str]:
        """The optional ``Batch`` fields the parts read."""
        return self.encoder.requires | self.block.requires | self.decoder.requires

    def set_centerbias(self, centerbias: CenterBias) -> None:
        self.centerbias_density.copy_(torch.from_numpy(centerbias.density))

    def centerbias(self, bandwidth: float, uniform_weight: float) -> CenterBias:
        """The stored centre bias (``DATA.CENTERBIAS`` of the run gives its parameters)."""
        centerbias = CenterBias(bandwidth, uniform_weight)
        centerbias.density = self.centerbias_density.cpu().numpy().astype(np.float64)
        return centerbias

    def forward(self, batch: Batch) -> torch.Tensor:
        features = self.block(self.encoder(batch.image), batch)
        return self.decoder(features, batch)

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder.loss(prediction, batch)


def build_model(cfg: CfgNode) -> GazeModel:
    """Build the parts named in ``cfg.MODEL``; each is built from what the previous announced.

    Fails when a part reads batch fields the data configuration does not provide.
    """
    node = cfg.MODEL
    encoder = ENCODERS.build(node.ENCODER)
    block = BLOCKS.build(node.BLOCK, input_shapes=encoder.output_shapes)
    decoder = DECODERS.build(node.DECODER, input_shapes=block.output_shapes)
    model = GazeModel(encoder, block, decoder)
    lacking = model.requires - batch_fields(cfg)
    if lacking:
        parts = {"MODEL.ENCODER": encoder, "MODEL.BLOCK": block, "MODEL.DECODER": decoder}
        who = [
            f"{key}.NAME {node[key.split('.')[1]].NAME!r}"
            for key, p in parts.items()
            if p.requires & lacking
        ]
        raise ConfigError(
            f"{', '.join(who)} needs {', '.join(sorted(lacking))} in the batch, which the data "
            f"configuration does not provide: {_how_to_provide(lacking)}"
        )
    return model


def _how_to_provide(fields: frozenset[str]) -> str:
    hints = []
    if "segments" in fields:
        hints.append("set DATA.SEGMENTS.NAME (files or kmeans)")
    if fields & {"history", "history_mask", "fixation_rows"}:
        hints.append("set DATA.SAMPLES.NAME: scanpath")
    return "; ".join(hints)
