"""A hierarchical vision transformer: Swin, PVT v2 and SegFormer's Mix Transformer as settings
of one encoder, with the attention mechanism chosen independently (``ATTENTION.NAME``), so
published variants can be mixed (e.g. SegFormer's Mix-FFN with Swin's shifted windows).

Stage i: a patch embedding (stage 0) or merging (later stages) to ``widths[i]`` channels, then
``depths[i]`` pre-norm blocks of attention and feed-forward network, then a LayerNorm; its output
is the next stage's input and the map ``stage{i}``.

Patch embeddings (``patch_embed``):

- ``nonoverlapping`` (Swin): a patch_size × patch_size conv of stride patch_size and LayerNorm,
  then, between stages, 2×2 patch merging (the four neighbours' channels concatenated,
  LayerNorm, a linear map without bias to the next width).
- ``overlapping`` (PVT v2, SegFormer): a conv of kernel 2s − 1, stride s and padding s − 1,
  then LayerNorm, with s = patch_size at stage 0 and 2 after: for patch_size 4 the kernels
  7/4/3 and 3/2/1 of PVT v2 and SegFormer.

Any input size works, and the map of stage i has ⌈H / stride⌉ × ⌈W / stride⌉ positions
(stride = patch_size · 2^i), the size the readout decoders expect of an image rounded up to the
stride. ``nonoverlapping`` zero-pads the (normalised) image at the bottom and right to a multiple
of patch_size and every odd grid by one row or column before merging, as Swin's detection
backbone does; ``overlapping`` needs no padding beyond its convs', whose output is that size for
every input size. Nothing is cropped, because every map is exactly that size.

One attention setting serves every stage, built per block with that block's width and heads:

- ``shifted_window``: Swin's alternation; each block is built with its index inside its stage,
  on which the mechanism sets its shift: blocks of even index (0, 2, ...) use plain windows and
  those of odd index windows shifted by WINDOW_SIZE // 2, so a stage of depth 1 has no shifted
  block. ``window`` never shifts.
- ``spatial_reduction``: its POOL_SIZE (PVT v2's linear variant) gives every stage the same
  pool_size² keys, as PVT v2 uses pool size 7 at every stage, so one setting is PVT v2's. Its
  RATIO (PVT v1) reduces every stage's key grid by the same factor; PVT v1's per-stage ratios
  (8, 4, 2, 1, keys at stride 32 throughout) are not expressible here.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from code.data.batch import Batch
from code.models.base import Encoder, Features
from code.models.layers.transformer import FeedForwardKind, TransformerBlock, init_linear
from code.models.shapes import ShapeSpec
from code.registry import ATTENTIONS, ENCODERS, ConfigError, SubPart
from code.utils.logging import log_shapes, log_signature
from code.utils.tensors import bchw_to_bnc, bnc_to_bchw

PatchEmbedKind = Literal["nonoverlapping", "overlapping"]


class PatchEmbedding(nn.Module):
    """Swin's patch embedding: patch × patch conv of stride patch, LayerNorm; the image is
    zero-padded at the bottom and right to a multiple of the patch."""

    def __init__(self, in_channels: int, out_channels: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C, H, W) -> (B, N, C') tokens on their (⌈H/p⌉, ⌈W/p⌉) grid."""
        p = self.patch_size
        x = self.proj(F.pad(x, (0, -x.shape[-1] % p, 0, -x.shape[-2] % p)))
        return self.norm(bchw_to_bnc(x)), (x.shape[-2], x.shape[-1])


class PatchMerging(nn.Module):
    """Swin's patch merging: each 2×2 neighbourhood's channels concatenated (in Swin's order:
    top-left, bottom-left, top-right, bottom-right), LayerNorm, linear map without bias; an odd
    grid is zero-padded by one row or column at the bottom or right first."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * in_channels)
        self.reduction = nn.Linear(4 * in_channels, out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C, H, W) -> (B, N, C') tokens on their (⌈H/2⌉, ⌈W/2⌉) grid."""
        x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        grid = (x.shape[-2] // 2, x.shape[-1] // 2)
        merged = rearrange(x, "b c (h dy) (w dx) -> b (h w) (dx dy c)", dy=2, dx=2)
        return self.reduction(self.norm(merged)), grid


class OverlappingPatchEmbedding(nn.Module):
    """PVT v2's overlapping patch embedding: a conv of kernel 2s − 1, stride s and padding s − 1
    (each patch overlaps its neighbours by s − 1 pixels on each side), LayerNorm. Its output is
    ⌈H/s⌉ × ⌈W/s⌉ for every H, W: ⌊(H + 2(s − 1) − (2s − 1)) / s⌋ + 1 = ⌊(H − 1) / s⌋ + 1."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            in_channels, out_channels, kernel_size=2 * stride - 1, stride=stride, padding=stride - 1
        )
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C, H, W) -> (B, N, C') tokens on their (⌈H/s⌉, ⌈W/s⌉) grid."""
        x = self.proj(x)
        return self.norm(bchw_to_bnc(x)), (x.shape[-2], x.shape[-1])


class Stage(nn.Module):
    """Embedding (or merging), the stage's blocks, LayerNorm: map in, map out."""

    def __init__(self, embed: nn.Module, blocks: list[TransformerBlock], channels: int) -> None:
        super().__init__()
        self.embed = embed
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, grid = self.embed(x)
        for block in self.blocks:
            tokens = block(tokens, grid)
        return bnc_to_bchw(self.norm(tokens), *grid)


@ENCODERS.register("hierarchical_transformer")
class HierarchicalTransformerEncoder(Encoder):
    """Stages of patch embedding or merging and transformer blocks (module docstring); feature
    ``stage{i}`` (i in ``outputs``): ``widths[i]`` channels at stride ``patch_size · 2^i``.

    ``depths``, ``widths``, ``heads``: per stage, the number of blocks, the channels and the
    attention heads. ``mlp_ratio``: the FFN's hidden channels per channel. ``ffn``: ``mlp`` or
    ``mix_ffn``. The input is ImageNet-normalised.
    """

    @log_signature
    def __init__(
        self,
        patch_embed: PatchEmbedKind,
        patch_size: int,
        depths: list[int],
        widths: list[int],
        heads: list[int],
        mlp_ratio: float,
        ffn: FeedForwardKind,
        attention: SubPart[ATTENTIONS],
        outputs: list[int],
    ) -> None:
        super().__init__()
        check_stages(patch_size, depths, widths, heads, mlp_ratio, outputs)
        stages, in_channels = [], 3
        for i in range(outputs[-1] + 1):  # later stages would feed no output
            width = widths[i]
            if patch_embed == "overlapping":
                embed = OverlappingPatchEmbedding(in_channels, width, patch_size if i == 0 else 2)
            elif i == 0:
                embed = PatchEmbedding(in_channels, width, patch_size)
            else:
                embed = PatchMerging(in_channels, width)
            blocks = [
                TransformerBlock(
                    width,
                    attention(channels=width, num_heads=heads[i], block_index=j),
                    ffn,
                    int(width * mlp_ratio),
                    stage_idx=i,
                )
                for j in range(depths[i])
            ]
            stages.append(Stage(embed, blocks, width))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.apply(init_linear)
        self.output_shapes = {
            f"stage{i}": ShapeSpec(channels=widths[i], stride=patch_size * 2**i) for i in outputs
        }
        self.attention = attention  # announced to the decoder: one ATTENTION key per model

    @log_shapes
    def forward(self, image: torch.Tensor, batch: Batch | None = None) -> Features:
        x, features = self.normalize(image), {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if f"stage{i}" in self.output_shapes:
                features[f"stage{i}"] = x
        return features


def check_stages(
    patch_size: int,
    depths: list[int],
    widths: list[int],
    heads: list[int],
    mlp_ratio: float,
    outputs: list[int],
) -> None:
    """Refuse stage settings that cannot make an encoder, naming the key."""
    if patch_size < 1:
        raise ConfigError(f"must be at least 1, got {patch_size}", key="PATCH_SIZE")
    lengths = {"DEPTHS": len(depths), "WIDTHS": len(widths), "HEADS": len(heads)}
    if len(set(lengths.values())) != 1 or not depths:
        raise ConfigError(
            "give one entry per stage, at least one stage: got "
            + ", ".join(f"{n} entries in {key}" for key, n in lengths.items()),
            key="DEPTHS, WIDTHS and HEADS",
        )
    for i, (depth, width, num_heads) in enumerate(zip(depths, widths, heads, strict=True)):
        if depth < 1:
            raise ConfigError(f"is {depth}: every stage needs a block", key=f"DEPTHS[{i}]")
        if width < 1:
            raise ConfigError(f"is {width}: a stage needs channels", key=f"WIDTHS[{i}]")
        if num_heads < 1 or width % num_heads:
            raise ConfigError(f"{num_heads} does not divide WIDTHS[{i}] {width}", key=f"HEADS[{i}]")
        if int(width * mlp_ratio) < 1:
            raise ConfigError(
                f"{mlp_ratio} leaves no hidden channel at WIDTHS[{i}] {width}", key="MLP_RATIO"
            )
    if (
        not outputs
        or sorted(set(outputs)) != outputs
        or not 0 <= outputs[0] <= outputs[-1] < len(depths)
    ):
        raise ConfigError(
            f"{outputs}: ascending stage indices in 0..{len(depths) - 1}, at least one",
            key="OUTPUTS",
        )
