"""Seeded, chainable changes to training samples after the cache (``DATA.TRANSFORMS``).

``DATA.TRANSFORMS.NAMES`` lists registered transforms, applied in that order to every training
item (never to validation or test items); each takes its keys from its own node, e.g.
``DATA.TRANSFORMS.HFLIP.PROBABILITY``. A transform draws only from a generator seeded by
(``SEED``, epoch, item), never from a process's global state, so neither the number of
DataLoader workers nor a resume changes what it does: a resumed run sees the same samples as an
uninterrupted one.

Every entry of a sample that lies on the image grid must move with the image: a transform names
the entries it can move (``moves``) and refuses, before any work, samples holding another one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from code.data.batch import Sample
from code.registry import TRANSFORMS

# Sample entries on the image grid, in pixels of the image: (H, W, ...) maps or (..., 2) points.
SPATIAL_ENTRIES = frozenset(
    {"image", "segments", "centerbias", "foreground", "fixations", "history", "scanpaths", "points"}
)


class Transform:
    """Changes one sample with draws from ``rng``; ``moves``: the spatial entries it handles."""

    moves: frozenset[str]

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        raise NotImplementedError


def mirror_x(points: np.ndarray, width: int) -> np.ndarray:
    """(..., 2) points (x, y) mirrored left-right: pixel column c goes to width - 1 - c, and a
    point keeps its offset inside its pixel (so integer coordinates stay in their pixel)."""
    column = np.floor(points[..., 0])
    mirrored = points.copy()
    mirrored[..., 0] = width - 1 - column + (points[..., 0] - column)
    return mirrored


@TRANSFORMS.register("hflip")
class HorizontalFlip(Transform):
    """Mirror the image left-right with ``probability``, fixations and maps with it."""

    moves = SPATIAL_ENTRIES

    def __init__(self, probability: float) -> None:
        if not 0 <= probability <= 1:
            raise ValueError(f"hflip PROBABILITY must be in [0, 1], got {probability}")
        self.probability = probability

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.probability:
            return sample
        width = sample["image"].shape[1]
        out = dict(sample)
        for key in ("image", "segments", "centerbias", "foreground"):
            if key in sample:
                out[key] = np.ascontiguousarray(sample[key][:, ::-1])
        for points in ("fixations", "points"):
            if points in sample:
                out[points] = mirror_x(sample[points], width)
        for points, mask in (("history", "history_mask"), ("scanpaths", "scanpath_mask")):
            if points in sample:
                # padding entries are zeros under a False mask: keep them so
                out[points] = np.where(
                    sample[mask][..., None], mirror_x(sample[points], width), 0.0
                ).astype(sample[points].dtype)
        return out


@TRANSFORMS.register("random_resized_crop")
class RandomResizedCrop(Transform):
    """A random crop of ``scale`` x the image's area and aspect ratio in ``ratio`` (log-uniform),
    resized back to the image's size (bilinear; segments nearest), as torchvision's.

    Fixations would leave the crop: samples with fixations are refused (use it on items without
    gaze, e.g. ``DATA.SAMPLES.NAME: image``). Scanpaths move with the crop, their points outside
    it masked out (``scanpath_mask``); foreground weights are cropped and resized like the image.
    """

    moves = frozenset({"image", "segments", "foreground", "scanpaths"})

    def __init__(self, scale: list[float], ratio: list[float]) -> None:
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(
                f"random_resized_crop SCALE must be [low, high] in (0, 1], got {scale}"
            )
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"random_resized_crop RATIO must be [low, high] > 0, got {ratio}")
        self.scale = scale
        self.ratio = ratio

    def box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(top, left, crop height, crop width); after 10 failed draws, the central crop of the
        closest allowed aspect ratio."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return (
                    int(rng.integers(0, height - h + 1)),
                    int(rng.integers(0, width - w + 1)),
                    h,
                    w,
                )
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        w, h = (
            (width, round(width / aspect))
            if width / height < aspect
            else (round(height * aspect), height)
        )
        h, w = min(h, height), min(w, width)
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height, width = sample["image"].shape[:2]
        top, left, h, w = self.box(height, width, rng)
        out = dict(sample)
        crop = sample["image"][top : top + h, left : left + w]
        out["image"] = np.asarray(Image.fromarray(crop).resize((width, height), Image.BILINEAR))
        if "segments" in sample:
            rows = top + ((np.arange(height) + 0.5) * h / height).astype(int)
            cols = left + ((np.arange(width) + 0.5) * w / width).astype(int)
            out["segments"] = sample["segments"][rows[:, None], cols[None, :]]
        if "foreground" in sample:
            weights = Image.fromarray(sample["foreground"][top : top + h, left : left + w])
            out["foreground"] = np.asarray(weights.resize((width, height), Image.BILINEAR))
        if "scanpaths" in sample:
            points = sample["scanpaths"]
            inside = (
                (points[..., 0] >= left) & (points[..., 0] < left + w)
                & (points[..., 1] >= top) & (points[..., 1] < top + h)
            )  # fmt: skip
            mask = sample["scanpath_mask"] & inside
            moved = (points - [left, top]) * [width / w, height / h]
            out["scanpaths"] = np.where(mask[..., None], moved, 0.0).astype(points.dtype)
            out["scanpath_mask"] = mask
        return out


def build_transforms(node: Any, entries: set[str]) -> list[Transform]:
    """The transforms ``DATA.TRANSFORMS`` lists, checked to move every spatial entry of samples
    holding ``entries``."""
    transforms = TRANSFORMS.build_chain(node)
    for name, transform in zip(node.NAMES, transforms, strict=True):
        unmoved = sorted((entries & SPATIAL_ENTRIES) - transform.moves)
        if unmoved:
            raise ValueError(
                f"DATA.TRANSFORMS {name!r} cannot move the samples' {', '.join(unmoved)} with "
                f"the image; it moves {', '.join(sorted(transform.moves))}"
            )
    return transforms


class EpochSeeded(torch.utils.data.Dataset):
    """Training items drawn anew each epoch: the training loader indexes them by (epoch, item)
    pairs (:class:`EpochIndexedBatches`), evaluation loaders by item alone."""


class TransformedSamples(EpochSeeded):
    """Training items with ``transforms`` applied, seeded by (``seed``, epoch, item).

    Indexed by (epoch, item) pairs, which :class:`EpochIndexedBatches` makes from a batch
    sampler; its ``fields`` and ``sizes`` are those of ``items``.
    """

    def __init__(self, items: Any, transforms: Sequence[Transform], seed: int) -> None:
        self.items = items
        self.transforms = transforms
        self.seed = seed
        self.fields = items.fields

    def __len__(self) -> int:
        return len(self.items)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return self.items.sizes

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        sample = self.items[key if isinstance(self.items, EpochSeeded) else index]
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


class EpochIndexedBatches:
    """A batch sampler's batches as (epoch, item) pairs; everything else is the sampler's."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.sampler:
            yield [(self.sampler.epoch, index) for index in batch]

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def state_dict(self, batches_consumed: int) -> dict[str, Any]:
        return self.sampler.state_dict(batches_consumed)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
