"""Masking input stages for masked image modelling: the encoder sees the image with its masked
part filled in, and ``Batch.loss_mask`` is 1 where the reconstruction loss applies (the masked
part); ``batch.target`` stays the clean image. (No masking, the plain autoencoder, is the
``identity`` stage: without a mask the loss applies everywhere.)

Masks are drawn per item: in training from torch's generator (seeded and restored on resume by
the engine); in evaluation from one seeded by the image's index, so a validation or test loss
is the same number at every epoch and for every model.

The masks: ``random_patches`` and ``periphery`` (the seed's), ``foveate`` (the seed's foveation:
a Gaussian pyramid beyond a central disc), ``fixations`` (discs at real human fixations) and
``neva_foveation`` (NeVA's foveation after real human fixations, a soft mask).
The fill replaces the masked pixels: ``mean`` (the image's mean colour) or ``blur`` (the image
blurred with ``BLUR_SIGMA`` px, so coarse content survives); ``foveate`` fills with its pyramid.
Unlike the seed, where the mean fill runs after the blur and overwrites it in two modes, the
blur fill here is what the encoder sees.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F

from code.data.batch import Batch
from code.models.base import InputStage
from code.models.layers.foveation import Foveation, from_pixels
from code.models.layers.gaussian_blur import GaussianBlur
from code.registry import INPUT_STAGES, SubNode
from code.utils.logging import log_signature

EVAL_SEED = 12345  # evaluation masks: generator seeded by EVAL_SEED + image index
Fill = Literal["mean", "blur"]


def check_ratio(ratio: float) -> float:
    if not 0 <= ratio < 1:
        raise ValueError(f"masking RATIO must be in [0, 1), got {ratio}")
    return ratio


class MaskingStage(InputStage):
    """Draws a mask per item (:meth:`draw`, 1 = hidden), fills it (:meth:`filler`), sets
    ``loss_mask``."""

    def draw(self, batch: Batch, item: int, generator: torch.Generator | None) -> torch.Tensor:
        """(H, W) float mask of item ``item`` of ``batch``, 1 where hidden (on the CPU)."""
        raise NotImplementedError

    def filler(self, image: torch.Tensor) -> torch.Tensor:
        """What the encoder sees where the mask hides the (B, 3, H, W) image."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> Batch:
        masks = []
        for item in range(len(batch)):
            generator = None
            if not self.training:
                seed = EVAL_SEED + int(batch.image_index[item])
                generator = torch.Generator().manual_seed(seed)
            masks.append(self.draw(batch, item, generator))
        image = batch.input
        mask = torch.stack(masks)[:, None].to(image)
        masked = image * (1 - mask) + self.filler(image) * mask
        return dataclasses.replace(batch, input=masked, loss_mask=mask)


class FilledMask(MaskingStage):
    """A mask filled with the image's mean colour (``fill: mean``) or its blur (``blur``)."""

    def __init__(self, fill: Fill, blur_sigma: float) -> None:
        super().__init__()
        if fill not in ("mean", "blur"):
            raise ValueError(f"masking FILL must be 'mean' or 'blur', got {fill!r}")
        self.fill = fill
        self.blur = GaussianBlur(blur_sigma, learnable=False) if fill == "blur" else None

    def filler(self, image: torch.Tensor) -> torch.Tensor:
        if self.blur is None:
            return image.mean(dim=(2, 3), keepdim=True).expand_as(image)
        return self.blur(image)


@INPUT_STAGES.register("random_patches")
class RandomPatches(FilledMask):
    """⌊(H/p)(W/p)·ratio⌋ of the p x p patches (p = ``patch_size``; the grid of whole patches
    from the top left), chosen anew per item."""

    @log_signature
    def __init__(self, ratio: float, patch_size: int, fill: Fill, blur_sigma: float) -> None:
        super().__init__(fill, blur_sigma)
        if patch_size < 1:
            raise ValueError(f"random_patches PATCH_SIZE must be positive, got {patch_size}")
        self.ratio = check_ratio(ratio)
        self.patch_size = patch_size

    def patch_count(self, height: int, width: int) -> int:
        return math.floor((height // self.patch_size) * (width // self.patch_size) * self.ratio)

    def draw(self, batch: Batch, item: int, generator: torch.Generator | None) -> torch.Tensor:
        height, width = batch.input.shape[-2:]
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
class Periphery(FilledMask):
    """Only a central disc is visible, of radius √(HW(1 − ratio)/π): ``ratio`` of the image's
    area (up to pixel rounding) is hidden."""

    @log_signature
    def __init__(self, ratio: float, fill: Fill, blur_sigma: float) -> None:
        super().__init__(fill, blur_sigma)
        self.ratio = check_ratio(ratio)

    def draw(self, batch: Batch, item: int, generator: torch.Generator | None) -> torch.Tensor:
        height, width = batch.input.shape[-2:]
        return outside_central_disc(height, width, self.ratio)


def central_disc_radius(height: int, width: int, ratio: float) -> float:
    """The radius of the central disc leaving ``ratio`` of the image's area outside it."""
    return math.sqrt(height * width * (1 - ratio) / math.pi)


def beyond_central_disc(height: int, width: int, ratio: float) -> torch.Tensor:
    """(H, W) distance in pixels of each pixel's centre beyond that disc's edge (0 inside)."""
    centre = torch.tensor([[width / 2, height / 2]])
    radius = central_disc_radius(height, width, ratio)
    return (distance_to(centre, height, width) - radius).clamp(min=0)


def outside_central_disc(height: int, width: int, ratio: float) -> torch.Tensor:
    """(H, W) float, 1 outside that disc."""
    return (beyond_central_disc(height, width, ratio) > 0).float()


def distance_to(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W) distance in pixels from each pixel's centre to the nearest of the (P, 2) points
    (x, y); infinite without points."""
    ys = torch.arange(height, dtype=torch.float32)[:, None, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, :, None] + 0.5
    points = points.float().cpu()
    if len(points) == 0:
        return torch.full((height, width), math.inf)
    return torch.hypot(xs - points[:, 0], ys - points[:, 1]).amin(dim=-1)


@INPUT_STAGES.register("fixations")
class FixationDiscs(FilledMask):
    """Visible discs of ``radius`` px around the first ``count`` fixations of one of the image's
    scanpaths (``Batch.scanpaths``, from ``DATA.SAMPLES.IMAGE.SCANPATHS``), chosen per item: the
    model learns to predict what the next eye movements would reveal. Fixations a crop moved
    out of the image show nothing."""

    requires = frozenset({"scanpaths", "scanpath_mask"})

    @log_signature
    def __init__(self, count: int, radius: float, fill: Fill, blur_sigma: float) -> None:
        super().__init__(fill, blur_sigma)
        if count < 1:
            raise ValueError(f"fixations COUNT must be at least 1, got {count}")
        if radius <= 0:
            raise ValueError(f"fixations RADIUS must be positive, got {radius}")
        self.count = count
        self.radius = radius

    def draw(self, batch: Batch, item: int, generator: torch.Generator | None) -> torch.Tensor:
        height, width = batch.input.shape[-2:]
        points = first_fixations(batch, item, self.count, generator)
        return (distance_to(points, height, width) > self.radius).float()


def first_fixations(
    batch: Batch, item: int, count: int, generator: torch.Generator | None
) -> torch.Tensor:
    """(≤ count, 2) the first fixations (x, y, pixels) of one recorded scanpath of item ``item``,
    chosen at random (``generator``); none if the item has no scanpath or a crop moved them
    out of the image."""
    valid = batch.scanpath_mask[item].cpu()
    recorded = valid.any(dim=-1).nonzero().flatten()
    if len(recorded) == 0:
        return torch.zeros(0, 2)
    chosen = recorded[torch.randint(len(recorded), (1,), generator=generator)].item()
    first = batch.scanpaths[item, chosen, :count].cpu()
    return first[valid[chosen, :count]]


@INPUT_STAGES.register("neva_foveation")
class NeVAFoveation(MaskingStage):
    """The image as NeVA's foveation (``code.models.layers.foveation``) shows it after the
    first ``count`` fixations of one of its recorded scanpaths, chosen per item: sharp where
    the remembered fovea covers it, blurred elsewhere; the loss applies in proportion to the
    blur (1 − the clipped memory). Items without fixations are seen blurred all over.
    ``foveation``: the node of the layer's keys, as the ``scanpath_generation`` task's."""

    requires = frozenset({"scanpaths", "scanpath_mask"})

    @log_signature
    def __init__(self, count: int, foveation: SubNode[Foveation]) -> None:
        super().__init__()
        if count < 1:
            raise ValueError(f"neva_foveation COUNT must be at least 1, got {count}")
        self.count = count
        self.foveation = foveation()

    def draw(self, batch: Batch, item: int, generator: torch.Generator | None) -> torch.Tensor:
        height, width = batch.input.shape[-2:]
        seen = torch.zeros(1, height, width)
        fixations = from_pixels(first_fixations(batch, item, self.count, generator), height, width)
        for fixation in fixations[:-1]:
            seen = self.foveation.remember(seen, fixation[None])
        if len(fixations):  # the memory of the ones before, and the fovea of the last
            seen = seen + self.foveation.fovea(fixations[-1:], height, width)
        # perceived = x + (G∗x − x)·clip(1 − seen): the mask is how much of the blur shows
        return (1 - seen[0]).clamp(0, 1)

    def filler(self, image: torch.Tensor) -> torch.Tensor:
        return self.foveation.blur(image)


@INPUT_STAGES.register("foveate")
class Foveate(MaskingStage):
    """Foveated vision: full resolution in a central disc (radius √(HW(1 − ratio)/π), as for
    ``periphery``), and outside it a resolution R = α/(θ + α) that falls with the eccentricity
    θ (degrees beyond the disc's edge, ``pixels_per_degree`` px each): pixel values come from a
    Gaussian pyramid (each level blurred with ``sigma`` px and halved) at level log₂(1/R),
    interpolated between the two nearest of its ``levels`` and clipped at the coarsest. The
    loss applies outside the full-resolution disc."""

    @log_signature
    def __init__(
        self, ratio: float, levels: int, sigma: float, pixels_per_degree: float, alpha: float
    ) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"foveate LEVELS must be at least 2, got {levels}")
        if pixels_per_degree <= 0 or alpha <= 0:
            raise ValueError(
                f"foveate PIXELS_PER_DEGREE and ALPHA must be positive, got "
                f"{pixels_per_degree} and {alpha}"
            )
        self.ratio = check_ratio(ratio)
        self.levels = levels
        self.blur = GaussianBlur(sigma, learnable=False)
        self.pixels_per_degree = pixels_per_degree
        self.alpha = alpha

    def level(self, height: int, width: int) -> torch.Tensor:
        """(H, W) pyramid level each pixel is drawn from: log₂(1 + θ/α), clipped."""
        theta = beyond_central_disc(height, width, self.ratio) / self.pixels_per_degree
        return torch.log2(1 + theta / self.alpha).clamp(max=self.levels - 1)

    def pyramid(self, image: torch.Tensor) -> torch.Tensor:
        """(levels, B, 3, H, W): the image, then each level blurred, halved, shown at full size."""
        size = image.shape[-2:]
        levels, current = [image], image
        for _ in range(self.levels - 1):
            current = self.blur(current)[..., ::2, ::2]
            levels.append(F.interpolate(current, size=size, mode="bilinear", align_corners=False))
        return torch.stack(levels)

    def filler(self, image: torch.Tensor) -> torch.Tensor:
        level = self.level(*image.shape[-2:]).to(image)
        below = level.floor().long().clamp(max=self.levels - 2)
        weight = level - below  # of the coarser of the two levels
        pyramid = self.pyramid(image)
        index = below.expand_as(image)[None]
        finer = pyramid.gather(0, index)[0]
        coarser = pyramid.gather(0, index + 1)[0]
        return finer + (coarser - finer) * weight

    def draw(self, batch: Batch, item: int, generator: torch.Generator | None) -> torch.Tensor:
        height, width = batch.input.shape[-2:]
        return outside_central_disc(height, width, self.ratio)
