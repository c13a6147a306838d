"""Swin-UNet's decoder (Cao et al., 2022) read out to a log-density: from the encoder's coarsest
map back up to its finest, each step a patch expanding to the next finer map's grid, a skip
connection from that map and transformer blocks, then the saliency finalizer.

Decoder stage i works at the resolution and width of the encoder's map i (fine to coarse,
i = 0 … K for K + 1 maps; the coarsest, K, is the bottleneck and starts the way up):

1. patch expanding of the map coming up (stage i + 1's) to twice its grid with map i's width,
   cropped to map i's grid (the encoder rounded odd grids up on the way down);
2. skip connection: the expanded tokens and map i's concatenated, a linear map back to the width;
3. ``depths[i]`` pre-norm transformer blocks with ``heads[i]`` heads and ``stage_idx`` i, so the
   numbers continue the encoder's on the way back (encoder 0 1 2 3, decoder 2 1 0); i counts the
   maps the decoder receives, the encoder's stage numbers when its OUTPUTS start at stage 0.

After stage 0: LayerNorm and a linear map to one channel at map 0's stride, which the finalizer
blurs, upsamples to the image, combines with the centre bias and normalises (where Swin-UNet
expands 4× and classifies each pixel).

The attention mechanism is the encoder's (``encoder_attention``, announced by the encoder and
wired in by the builder), each block built with its index inside its stage, so that Swin's
alternation of plain and shifted windows runs inside each stage:
the decoder has no ATTENTION key of its own, so the encoder's ``ATTENTION.NAME`` alone decides
how every block of the model attends, and an encoder that announces no mechanism cannot feed it.
"""

from __future__ import annotations

import itertools

import torch
from einops import rearrange
from torch import nn

from code.data.batch import Batch
from code.models.base import Features
from code.models.decoders.finalizer import Finalizer, LogDensityDecoder
from code.models.layers.transformer import FeedForwardKind, TransformerBlock, init_linear
from code.models.shapes import FeatureShapes
from code.registry import DECODERS, ConfigError, PartFactory
from code.utils.logging import log_shapes, log_signature
from code.utils.tensors import bchw_to_bnc, bnc_to_bchw


class PatchExpanding(nn.Module):
    """The inverse of patch merging in sizes: a linear map without bias to 4 × ``out_channels``
    per token, each token's channels laid out as its 2×2 neighbourhood (Swin-UNet's expand to 2×
    channels and rearrangement, when ``out_channels`` is half the input's), cropped to ``grid``,
    then LayerNorm."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.expand = nn.Linear(in_channels, 4 * out_channels, bias=False)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, C, h, w) map -> (B, N, C') tokens on ``grid``, at most (2h, 2w)."""
        height, width = x.shape[-2:]
        if not (2 * height - 1 <= grid[0] <= 2 * height and 2 * width - 1 <= grid[1] <= 2 * width):
            raise ValueError(
                f"patch expanding doubles a {height}x{width} grid, which cannot give {grid}"
            )
        expanded = self.expand(bchw_to_bnc(x))
        expanded = rearrange(
            expanded, "b (h w) (dy dx c) -> b (h dy) (w dx) c", h=height, dy=2, dx=2
        )
        return self.norm(expanded[:, : grid[0], : grid[1]].flatten(1, 2))


class UpStage(nn.Module):
    """Patch expanding of the coarser map, skip connection (concatenate, linear), blocks."""

    def __init__(self, in_channels: int, channels: int, blocks: list[TransformerBlock]) -> None:
        super().__init__()
        self.expand = PatchExpanding(in_channels, channels)
        self.skip = nn.Linear(2 * channels, channels)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """(B, C', h, w) coming up, (B, C, H, W) skip map -> (B, C, H, W)."""
        grid = (skip.shape[-2], skip.shape[-1])
        tokens = self.skip(torch.cat([self.expand(x, grid), bchw_to_bnc(skip)], dim=-1))
        for block in self.blocks:
            tokens = block(tokens, grid)
        return bnc_to_bchw(tokens, *grid)


@DECODERS.register("unet_transformer")
class UNetTransformerDecoder(LogDensityDecoder):
    """Swin-UNet's way up from the maps it receives, read out to a log-density (module
    docstring). The maps, ordered by stride, must halve the stride from one to the next (an
    encoder's consecutive stages); there must be at least two.

    ``depths``, ``heads``: per decoder stage, from the finest (stage 0) to the one below the
    bottleneck, as the encoder lists its stages. ``mlp_ratio``, ``ffn``: the blocks' FFN.
    ``blur_sigma``, ``learn_blur``, ``centerbias_weight``: the finalizer's.
    Loss: negative log-likelihood of the batch's fixations in bits (per fixation).
    """

    @log_signature
    def __init__(
        self,
        input_shapes: FeatureShapes,
        encoder_attention: PartFactory | None,
        depths: list[int],
        heads: list[int],
        mlp_ratio: float,
        ffn: FeedForwardKind,
        blur_sigma: float,
        learn_blur: bool,
        centerbias_weight: float,
    ) -> None:
        super().__init__()
        if encoder_attention is None:
            raise ConfigError(
                "attends with the encoder's mechanism (MODEL.ENCODER.<encoder>.ATTENTION), and "
                "this encoder announces none; choose an encoder that attends "
                "(hierarchical_transformer)",
                key="",
            )
        self.names = sorted(input_shapes, key=lambda name: input_shapes[name].stride)
        widths = [input_shapes[name].channels for name in self.names]
        check_up_stages(input_shapes, self.names, depths, heads, mlp_ratio)
        self.stages = nn.ModuleList(
            UpStage(
                widths[i + 1],
                widths[i],
                [
                    TransformerBlock(
                        widths[i],
                        encoder_attention(channels=widths[i], num_heads=heads[i], block_index=j),
                        ffn,
                        int(widths[i] * mlp_ratio),
                        stage_idx=i,
                    )
                    for j in range(depths[i])
                ],
            )
            for i in range(len(self.names) - 1)
        )
        self.norm = nn.LayerNorm(widths[0])
        self.readout = nn.Linear(widths[0], 1)
        self.apply(init_linear)
        stride = input_shapes[self.names[0]].stride
        self.finalizer = Finalizer(stride, blur_sigma, learn_blur, centerbias_weight)

    @log_shapes
    def forward(self, features: Features, batch: Batch) -> torch.Tensor:
        maps = [features[name] for name in self.names]
        x = maps[-1]
        for i in reversed(range(len(self.stages))):  # coarse to fine: stage_idx K-1 ... 0
            x = self.stages[i](x, maps[i])
        readout = self.readout(self.norm(bchw_to_bnc(x)))
        return self.finalizer(bnc_to_bchw(readout, *x.shape[-2:]), batch.centerbias)


def check_up_stages(
    shapes: FeatureShapes, names: list[str], depths: list[int], heads: list[int], mlp_ratio: float
) -> None:
    """Refuse maps and stage settings the decoder cannot use, naming the key."""
    strides = [shapes[name].stride for name in names]
    listed = ", ".join(f"{name} (stride {shapes[name].stride})" for name in names)
    if len(names) < 2 or any(b != 2 * a for a, b in itertools.pairwise(strides)):
        raise ConfigError(
            "needs at least two maps whose strides double from one to the next (an encoder's "
            f"consecutive stages, e.g. its OUTPUTS [0, 1, 2]); it received {listed}",
            key="",
        )
    stages = len(names) - 1
    if len(depths) != stages or len(heads) != stages:
        raise ConfigError(
            f"give one entry per map below the coarsest ({stages} for {listed}), got "
            f"{len(depths)} and {len(heads)}",
            key="DEPTHS and HEADS",
        )
    for i, (depth, num_heads) in enumerate(zip(depths, heads, strict=True)):
        width = shapes[names[i]].channels
        if depth < 0:
            raise ConfigError(f"is {depth}: a stage has 0 or more blocks", key=f"DEPTHS[{i}]")
        if num_heads < 1 or width % num_heads:
            raise ConfigError(
                f"{num_heads} does not divide the {width} channels of {names[i]}", key=f"HEADS[{i}]"
            )
        if int(width * mlp_ratio) < 1:
            raise ConfigError(
                f"{mlp_ratio} leaves no hidden channel at the {width} channels of {names[i]}",
                key="MLP_RATIO",
            )
