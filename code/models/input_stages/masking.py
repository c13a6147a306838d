"""Masking input stages for masked image modelling: the encoder sees the image with its masked
part filled in, and ``Batch.loss_mask`` is 1 where the reconstruction loss applies (the masked
part); ``batch.target`` stays the clean image. (No masking, the plain autoencoder, is the
``identity`` stage: without a mask the loss applies everywhere.)

Masks are drawn per item: in training from torch's generator (seeded and restored on resume by
the engine); in evaluation from one seeded by the image's index, so a validation or test loss
is the same number at every epoch and for every model.

The fill replaces the masked pixels: ``mean`` (the image's mean colour) or ``blur`` (the image
blurred with ``BLUR_SIGMA`` px, so coarse content survives). Unlike the seed, where the mean fill
runs after the blur and overwrites it in two modes, the blur fill here is what the encoder sees.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

from code.data.batch import Batch
from code.models.base import InputStage
from code.models.layers.gaussian_blur import GaussianBlur
from code.registry import INPUT_STAGES
from code.utils.logging import log_signature

EVAL_SEED = 12345  # evaluation masks: generator seeded by EVAL_SEED + image index
Fill = Literal["mean", "blur"]


class MaskingStage(InputStage):
    """Draws a mask per item (:meth:`draw`, 1 = hidden), fills it, sets ``loss_mask``."""

    def __init__(self, ratio: float, fill: Fill, blur_sigma: float) -> None:
        super().__init__()
        if not 0 <= ratio < 1:
            raise ValueError(f"masking RATIO must be in [0, 1), got {ratio}")
        if fill not in ("mean", "blur"):
            raise ValueError(f"masking FILL must be 'mean' or 'blur', got {fill!r}")
        self.ratio = ratio
        self.fill = fill
        self.blur = GaussianBlur(blur_sigma, learnable=False) if fill == "blur" else None

    def draw(self, height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
        """(H, W) float mask of one item, 1 where hidden."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> Batch:
        image = batch.input
        height, width = image.shape[-2:]
        masks = []
        for item in range(len(batch)):
            generator = None
            if not self.training:
                seed = EVAL_SEED + int(batch.image_index[item])
                generator = torch.Generator().manual_seed(seed)
            masks.append(self.draw(height, width, generator))
        mask = torch.stack(masks)[:, None].to(image)
        if self.blur is None:
            filler = image.mean(dim=(2, 3), keepdim=True).expand_as(image)
        else:
            filler = self.blur(image)
        masked = image * (1 - mask) + filler * mask
        return dataclasses.replace(batch, input=masked, loss_mask=mask)


@INPUT_STAGES.register("random_patches")
class RandomPatches(MaskingStage):
    """⌊(H/p)(W/p)·ratio⌋ of the p x p patches (p = ``patch_size``; the grid of whole patches
    from the top left), chosen anew per item."""

    @log_signature
    def __init__(self, ratio: float, patch_size: int, fill: Fill, blur_sigma: float) -> None:
        super().__init__(ratio, fill, blur_sigma)
        if patch_size < 1:
            raise ValueError(f"random_patches PATCH_SIZE must be positive, got {patch_size}")
        self.patch_size = patch_size

    def patch_count(self, height: int, width: int) -> int:
        return math.floor((height // self.patch_size) * (width // self.patch_size) * self.ratio)

    def draw(self, height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
        p = self.patch_size
        rows, cols = height // p, width // p
        if rows == 0 or cols == 0:
            raise ValueError(f"random_patches: a {height}x{width} image has no {p}x{p} patch")
        chosen = torch.randperm(rows * cols, generator=generator)[: self.patch_count(height, width)]
        grid = torch.zeros(rows * cols)
        grid[chosen] = 1.0
        mask = torch.zeros(height, width)
        mask[: rows * p, : cols * p] = (
            grid.view(rows, cols).repeat_interleave(p, 0).repeat_interleave(p, 1)
        )
        return mask


@INPUT_STAGES.register("periphery")
class Periphery(MaskingStage):
    """Only a central disc is visible, of radius √(HW(1 − ratio)/π): ``ratio`` of the image's
    area (up to pixel rounding) is hidden."""

    @log_signature
    def __init__(self, ratio: float, fill: Fill, blur_sigma: float) -> None:
        super().__init__(ratio, fill, blur_sigma)

    def radius(self, height: int, width: int) -> float:
        return math.sqrt(height * width * (1 - self.ratio) / math.pi)

    def draw(self, height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
        ys = torch.arange(height, dtype=torch.float32)[:, None] + 0.5
        xs = torch.arange(width, dtype=torch.float32)[None, :] + 0.5
        distance = torch.hypot(xs - width / 2, ys - height / 2)
        return (distance > self.radius(height, width)).float()
