"""Model-ready samples: a stimulus resized to the model's input size, its fixations rescaled.

Per-image samples (what the LMDB cache stores) are ``ImageSamples`` — the resized image — with
``FixationSamples`` adding the image's fixations and the centre bias for tasks that use gaze.
The ``DATA.SAMPLES`` choice decides what one training item is: the image with all its fixations
(``saliency``), one scanpath with each fixation's history (``scanpath``), or the image alone
with itself as the target (``image``: reconstruction and other tasks without gaze, on any data
set of images). Each declares the ``Batch`` fields it adds in ``provides``; ``fields`` are all a
sample's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from code.data.batch import (
    BatchField,
    Sample,
    images,
    lengths_mask,
    padded,
    stacked,
    with_fields,
)
from code.data.gaze import GazeDataset
from code.registry import SAMPLES
from code.utils.logging import get_logger

INPUT = BatchField("input", "image", images)
TARGET = BatchField("target", "image", images)
FIXATIONS = (
    padded("fixations", "fixations", 0.0),
    BatchField("fixation_mask", "fixations", lengths_mask),
    stacked("centerbias", "centerbias", None),
)
HISTORY = (
    padded("history", "history", 0.0),
    padded("history_mask", "history_mask", False),
    padded("fixation_rows", "fixation_rows", -1),
)


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An (H, W, 3) uint8 image resized bilinearly to (height, width); as is if it fits."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


class ImageSamples(torch.utils.data.Dataset):
    """Sample i: image i of ``dataset`` (anything with ``stimuli``) resized to ``image_size``."""

    provides = (
        INPUT,
        stacked("image_index", "image_index", None),
        stacked("original_size", "original_size", None),
    )

    def __init__(self, dataset: Any, image_size: tuple[int, int]) -> None:
        self.dataset = dataset
        self.image_size = image_size
        self.fields = with_fields({}, *self.provides)

    def __len__(self) -> int:
        return len(self.dataset.stimuli)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """The (height, width) of every sample, for shape-aware batching."""
        return [self.image_size] * len(self)

    def __getitem__(self, index: int) -> Sample:
        stimulus = self.dataset.stimuli[index]
        image = stimulus.read()
        if image.shape[:2] != (stimulus.height, stimulus.width):
            raise ValueError(
                f"image {stimulus.id!r} ({stimulus.path}) is {image.shape[1]}x{image.shape[0]}, "
                f"but its data set says {stimulus.width}x{stimulus.height}"
            )
        return {
            "image": resize_rgb(image, *self.image_size),
            "image_index": np.array(index, dtype=np.int64),
            "original_size": np.array(stimulus.size, dtype=np.int64),
        }


class Added(torch.utils.data.Dataset):
    """Per-image samples of ``images`` with the fields of ``provides`` added (one item per image,
    of the same size); a subclass adds their entries in ``__getitem__``."""

    provides: tuple[BatchField, ...]

    def __init__(self, images: torch.utils.data.Dataset) -> None:
        self.images = images
        self.fields = with_fields(images.fields, *self.provides)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return self.images.sizes


class FixationSamples(Added):
    """Per-image samples with the image's fixations (in its resized pixels) and the centre bias.

    ``centerbias`` gives the baseline log-density for an image size; computed once per size.
    """

    provides = FIXATIONS

    def __init__(
        self,
        images: ImageSamples,
        dataset: GazeDataset,
        centerbias: Callable[[int, int], np.ndarray],
    ) -> None:
        super().__init__(images)
        self.dataset = dataset
        self._centerbias = centerbias(*images.image_size).astype(np.float32)
        fix = dataset.fixations
        order = np.argsort(fix.image, kind="stable")
        bounds = np.searchsorted(fix.image[order], np.arange(len(dataset.stimuli) + 1))
        self._rows = [order[a:b] for a, b in itertools.pairwise(bounds)]

    def __getitem__(self, index: int) -> Sample:
        sample = self.images[index]
        stimulus = self.dataset.stimuli[index]
        height, width = self.images.image_size
        fix = self.dataset.fixations.select(self._rows[index])
        scale = np.array([width / stimulus.width, height / stimulus.height])
        sample["fixations"] = (np.stack([fix.x, fix.y], axis=1) * scale).astype(np.float32)
        sample["centerbias"] = self._centerbias
        return sample


def needing(images: torch.utils.data.Dataset, field: str, who: str) -> torch.utils.data.Dataset:
    """``images``, checked to provide ``field`` (e.g. fixations, which an image data set lacks)."""
    if field not in images.fields:
        raise ValueError(f"DATA.SAMPLES {who!r} needs {field} in the per-image samples")
    return images


@SAMPLES.register("saliency")
def saliency_samples(images: torch.utils.data.Dataset) -> torch.utils.data.Dataset:
    """One item per image with all its fixations (the spatial models' training items)."""
    return needing(images, "fixations", "saliency")


@SAMPLES.register("image")
class ImageTargets(Added):
    """One item per image, the image also its ``target`` (no fixations needed)."""

    provides = (TARGET,)

    def __getitem__(self, index: int) -> Sample:
        return self.images[index]


@SAMPLES.register("scanpath")
class ScanpathSamples(torch.utils.data.Dataset):
    """One item per scanpath: its image, and each fixation with the ``history_length`` before it.

    ``include_first``: whether the first fixation of a scanpath is a target too (with an empty
    history). Data recorded after a central fixation cross (OSIE, MIT1003, ...) usually leave it
    out, as DeepGaze III does: it mostly reflects the cross, not the image. A scanpath without
    targets is skipped and counted.
    """

    provides = HISTORY

    def __init__(
        self,
        images: torch.utils.data.Dataset,
        dataset: GazeDataset,
        history_length: int,
        include_first: bool,
    ) -> None:
        if history_length < 1:
            raise ValueError(f"scanpath HISTORY_LENGTH must be at least 1, got {history_length}")
        self.images = needing(images, "fixations", "scanpath")
        self.dataset = dataset
        self.history_length = history_length
        self.fields = with_fields(images.fields, *self.provides)
        fix = dataset.fixations
        order = np.lexsort((fix.index, fix.train))
        bounds = np.flatnonzero(np.diff(fix.train[order])) + 1
        first_target = 0 if include_first else 1
        self._trains = [rows for rows in np.split(order, bounds) if len(rows) > first_target]
        self._first_target = first_target
        skipped = len(np.unique(fix.train)) - len(self._trains)
        if skipped:
            get_logger().info(
                "%s: %d scanpath(s) without a fixation to predict skipped", dataset.name, skipped
            )

    def __len__(self) -> int:
        return len(self._trains)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        image_sizes = self.images.sizes
        fix = self.dataset.fixations
        return [image_sizes[fix.image[rows[0]]] for rows in self._trains]

    def __getitem__(self, index: int) -> Sample:
        rows = self._trains[index]
        fix = self.dataset.fixations
        image = int(fix.image[rows[0]])
        sample = dict(self.images[image])
        stimulus = self.dataset.stimuli[image]
        height, width = sample["image"].shape[:2]
        scale = np.array([width / stimulus.width, height / stimulus.height])
        xy = (np.stack([fix.x[rows], fix.y[rows]], axis=1) * scale).astype(np.float32)
        targets = np.arange(self._first_target, len(rows))
        # history[t, j] = fixation targets[t] - 1 - j; positions before the scanpath are masked
        before = targets[:, None] - 1 - np.arange(self.history_length)[None, :]
        sample["fixations"] = xy[targets]
        sample["history"] = xy[before.clip(min=0)] * (before >= 0)[..., None]
        sample["history_mask"] = before >= 0
        sample["fixation_rows"] = rows[targets].astype(np.int64)
        return sample


def predicts_first_fixation(samples: Any) -> bool:
    """Whether a model trained on the items of the ``DATA.SAMPLES`` node ``samples`` predicts a
    scanpath's first fixation (all but scanpath items with ``INCLUDE_FIRST: false``, whose first
    fixation followed a fixation cross: sampled scanpaths start at the image centre)."""
    return samples.get(samples.NAME.upper(), {}).get("INCLUDE_FIRST", True)
