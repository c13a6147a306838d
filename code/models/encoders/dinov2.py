"""DINOv2 vision transformers (timm's architectures) as multi-layer patch-token map encoders."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from code.data.batch import Batch
from code.models.base import Encoder, Features
from code.models.shapes import ShapeSpec
from code.models.weights import check_shapes, read_state_dict
from code.registry import ENCODERS
from code.utils.logging import get_logger, log_shapes, log_signature

PATCH = 14

DinoArch = Literal[
    "vit_small_patch14_dinov2",
    "vit_base_patch14_dinov2",
    "vit_large_patch14_dinov2",
    "vit_giant_patch14_dinov2",
    "vit_small_patch14_reg4_dinov2",
    "vit_base_patch14_reg4_dinov2",
    "vit_large_patch14_reg4_dinov2",
    "vit_giant_patch14_reg4_dinov2",
]


@ENCODERS.register("dinov2")
class DinoV2Encoder(Encoder):
    """Patch tokens of the chosen transformer blocks, each laid out as a (B, C, H/14, W/14) map.

    The image is ImageNet-normalised and zero-padded (after normalisation, i.e. with the mean
    colour) on the right and bottom to a multiple of 14; the maps cover the padded image, so a
    consumer that upsamples by the stride crops back to the original size. Prefix tokens (class,
    registers) are removed by timm's ``forward_intermediates``, so map position (i, j) is the patch
    at rows 14i..14i+13, columns 14j..14j+13.

    ``weights``: a local checkpoint (.pth/.pt or .safetensors) in the official DINOv2 key layout or
    timm's; ``None`` means random initialisation. Nothing is ever downloaded.
    ``final_norm``: pass every chosen block's tokens through the model's final LayerNorm (as the
    last block's output is in DINOv2's own heads), or take them raw.
    """

    @log_signature
    def __init__(
        self, arch: DinoArch, layers: list[int], weights: str | None, freeze: bool, final_norm: bool
    ) -> None:
        super().__init__()
        import timm  # seconds to import (it pulls in torchvision): only when a ViT is built

        self.vit = timm.create_model(arch, pretrained=False, dynamic_img_size=True, num_classes=0)
        depth = len(self.vit.blocks)
        if not layers or any(not 0 <= i < depth for i in layers):
            raise ValueError(f"dinov2 LAYERS {layers} must be block indices in [0, {depth})")
        self.layers = layers
        self.final_norm = final_norm
        if weights is not None:
            load_vit_weights(self.vit, Path(weights))
        self.frozen = freeze
        if freeze:
            self.vit.requires_grad_(False)
            self.vit.eval()
        channels = self.vit.embed_dim
        self.output_shapes = {f"block{i}": ShapeSpec(channels, PATCH) for i in layers}

    def train(self, mode: bool = True) -> DinoV2Encoder:
        super().train(mode)
        if self.frozen:
            self.vit.eval()  # a frozen backbone keeps inference behaviour (no dropout/drop-path)
        return self

    @log_shapes
    def forward(self, image: torch.Tensor, batch: Batch | None = None) -> Features:
        x = self.normalize(image)
        height, width = x.shape[-2:]
        pad_h = math.ceil(height / PATCH) * PATCH - height
        pad_w = math.ceil(width / PATCH) * PATCH - width
        x = F.pad(x, (0, pad_w, 0, pad_h))
        maps = self.vit.forward_intermediates(
            x, indices=self.layers, intermediates_only=True, output_fmt="NCHW", norm=self.final_norm
        )
        return {name: m for name, m in zip(self.output_shapes, maps, strict=True)}


def load_vit_weights(vit: torch.nn.Module, path: Path) -> None:
    """Load a local ViT checkpoint, official-DINOv2 or timm layout; errors name what differs."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = read_state_dict(path, "DINOv2", "MODEL.ENCODER.DINOV2.WEIGHTS")
    try:  # maps the official layout (and others) to timm's
        state = checkpoint_filter_fn(state, vit)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not DINOv2 weights for {type(vit).__name__}: "
                         f"{type(err).__name__}: {str(err)[:300]}") from None  # fmt: skip
    check_shapes(vit, state, path, "DINOv2")
    missing, unexpected = vit.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: checkpoint does not match {type(vit).__name__}: "
            f"missing keys {sorted(missing)[:10]}, unexpected keys {sorted(unexpected)[:10]}"
        )
    get_logger().info("loaded DINOv2 weights from %s", path)
