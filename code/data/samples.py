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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from code.data.batch import (
    BatchField,
    Sample,
    images,
    lengths_mask,
    pad,
    padded,
    stacked,
    with_fields,
)
from code.data.gaze import Fixations, GazeDataset, Stimulus
from code.registry import SAMPLES
from code.utils.logging import get_logger

INPUT = BatchField("input", "image", images)
TARGET = BatchField("target", "image", images)
FIXATIONS = (
    padded("fixations", "fixations", 0.0),
    BatchField("fixation_mask", "fixations", lengths_mask),
    stacked("centerbias", "centerbias", None),
)
SCANPATHS = (
    padded("scanpaths", "scanpaths", 0.0),
    padded("scanpath_mask", "scanpath_mask", False),
)
FOREGROUND = stacked("foreground", "foreground", None)
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
    """Sample i: image i of ``dataset`` (anything with ``stimuli``) resized to ``image_size``.

    ``VERSION`` (here and on every per-image step the LMDB cache stores) names the code that makes
    the samples: bump it when a change makes different arrays from the same settings, so a cache
    built by the old code is not reused.
    """

    VERSION = 1
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

    def versions(self) -> dict[str, int]:
        """The code version of every step that made these samples, by class name."""
        return {type(self).__name__: self.VERSION}

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
    VERSION: int  # the steps the cache stores set it (see ImageSamples)

    def __init__(self, images: torch.utils.data.Dataset) -> None:
        self.images = images
        self.fields = with_fields(images.fields, *self.provides)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return self.images.sizes

    def versions(self) -> dict[str, int]:
        """The code version of every step that made these samples, by class name."""
        return {**self.images.versions(), type(self).__name__: self.VERSION}


class SelectedImages(Added):
    """:class:`Added` over the images a subclass keeps, ``_images`` (indices into ``images``);
    the others are left out, and counted with :func:`log_left_out`."""

    _images: np.ndarray

    def __len__(self) -> int:
        return len(self._images)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        sizes = self.images.sizes
        return [sizes[i] for i in self._images]


class FixationSamples(Added):
    """Per-image samples with the image's fixations (in its resized pixels) and the centre bias.

    ``centerbias`` gives the baseline log-density for an image size; computed once per size.
    ``VERSION`` covers the fixation scaling here and the centre-bias map (``CenterBias``).
    """

    VERSION = 1
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
class ImageTargets(SelectedImages):
    """One item per image, the image also its ``target`` (no fixations needed).

    ``scanpaths``: add every scanpath recorded on the image (``scanpaths``, (S, L, 2) in resized
    pixels, with ``scanpath_mask``), for masks at real fixations; images without one are left
    out and counted. ``foreground_dir``: add ``foreground``, a weight in [0, 1] per pixel read
    from ``<dir>/<stem>.png`` or ``.npy`` (any resolution; resized) that scales the
    reconstruction loss; ``drop_without_foreground`` leaves out (and counts) images without a
    file, else their weight is 1 everywhere.
    """

    provides = (TARGET, *SCANPATHS, FOREGROUND)  # all it can add; ``fields``: what it does

    def __init__(
        self,
        images: torch.utils.data.Dataset,
        dataset: GazeDataset,
        scanpaths: bool,
        foreground_dir: str | None,
        drop_without_foreground: bool,
    ) -> None:
        self.provides = (
            TARGET,
            *(SCANPATHS if scanpaths else ()),
            *((FOREGROUND,) if foreground_dir is not None else ()),
        )
        super().__init__(images)
        self.dataset = dataset
        _refuse_upsampled(dataset, images.sizes)
        keep = np.ones(len(dataset.stimuli), dtype=bool)
        self._scanpaths: list[list[np.ndarray]] | None = None
        if scanpaths:
            self._scanpaths = scanpath_rows(dataset)
            keep &= np.array([len(rows) > 0 for rows in self._scanpaths])
            log_left_out(dataset, "image(s) without a scanpath", int((~keep).sum()))
        self._foreground: list[Path | None] | None = None
        if foreground_dir is not None:
            self._foreground = foreground_files(Path(foreground_dir), dataset)
            has_file = np.array([path is not None for path in self._foreground])
            missing = int((keep & ~has_file).sum())
            if drop_without_foreground:
                keep &= has_file
                log_left_out(dataset, f"image(s) without a foreground file in {foreground_dir}",
                              missing)  # fmt: skip
            elif missing:
                get_logger().info("%s: %d image(s) without a foreground file in %s weigh 1 "
                                  "everywhere", dataset.name, missing, foreground_dir)  # fmt: skip
        if len(keep) and not keep.any():
            raise ValueError(f"{dataset.name}: DATA.SAMPLES.IMAGE leaves no image to use")
        self._images = np.flatnonzero(keep)

    def __getitem__(self, index: int) -> Sample:
        image = int(self._images[index])
        sample = dict(self.images[image])
        stimulus = self.dataset.stimuli[image]
        height, width = sample["image"].shape[:2]
        if self._scanpaths is not None:
            fix = self.dataset.fixations
            scale = np.array([width / stimulus.width, height / stimulus.height])
            paths = [np.stack([fix.x[rows], fix.y[rows]], axis=1) * scale
                     for rows in self._scanpaths[image]]  # fmt: skip
            sample["scanpaths"] = pad([p.astype(np.float32) for p in paths], 0.0).numpy()
            sample["scanpath_mask"] = lengths_mask(paths).numpy()
        if self._foreground is not None:
            path = self._foreground[image]
            sample["foreground"] = (
                np.ones((height, width), np.float32)
                if path is None
                else read_foreground(path, height, width)
            )
        return sample


def ordered_scanpaths(fix: Fixations) -> list[np.ndarray]:
    """The rows of each scanpath (by id), in temporal order."""
    order = np.lexsort((fix.index, fix.train))
    bounds = np.flatnonzero(np.diff(fix.train[order])) + 1
    return np.split(order, bounds) if len(order) else []


def scanpath_rows(dataset: GazeDataset) -> list[list[np.ndarray]]:
    """Per image, the fixation rows of each of its scanpaths, in temporal order."""
    per_image: list[list[np.ndarray]] = [[] for _ in dataset.stimuli]
    for rows in ordered_scanpaths(dataset.fixations):
        per_image[int(dataset.fixations.image[rows[0]])].append(rows)
    return per_image


def foreground_files(folder: Path, dataset: GazeDataset) -> list[Path | None]:
    """Per stimulus, ``folder/<stem>.png`` or ``.npy`` if there is one; refused, before any
    work, if both are there or the file's shape has not its image's aspect (another image's)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"DATA.SAMPLES.IMAGE.FOREGROUND_DIR: no folder {folder}")
    files = []
    for stimulus in dataset.stimuli:
        stem = Path(stimulus.id).stem
        found = [
            path for path in (folder / f"{stem}.png", folder / f"{stem}.npy") if path.is_file()
        ]
        if len(found) > 1:
            raise ValueError(f"{stimulus.id}: two foreground files, {found[0]} and {found[1]}")
        if found:
            check_aspect(found[0], foreground_shape(found[0]), stimulus)
        files.append(found[0] if found else None)
    return files


def foreground_shape(path: Path) -> tuple[int, ...]:
    """(height, width) of a foreground file, from its header."""
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r").shape
    with Image.open(path) as picture:
        return picture.height, picture.width


def check_aspect(path: Path, shape: tuple[int, ...], stimulus: Stimulus) -> None:
    if len(shape) != 2:
        raise ValueError(f"{path}: a foreground must be one channel, got shape {shape}")
    aspect, image_aspect = shape[1] / shape[0], stimulus.width / stimulus.height
    if abs(aspect / image_aspect - 1) > 0.02:
        raise ValueError(
            f"{path}: {shape[1]}x{shape[0]} does not have the aspect of its image "
            f"{stimulus.id!r} ({stimulus.width}x{stimulus.height}): the file of another image?"
        )


def read_foreground(path: Path, height: int, width: int) -> np.ndarray:
    """A foreground file as (height, width) float32 weights in [0, 1]: a ``.png`` (grey levels
    / 255) or an ``.npy`` (values as they are), resized bilinearly."""
    if path.suffix == ".npy":
        weights = np.load(path).astype(np.float32)
    else:
        with Image.open(path) as picture:
            weights = np.asarray(picture.convert("L"), dtype=np.float32) / 255
    if not np.isfinite(weights).all() or weights.min() < 0 or weights.max() > 1:
        raise ValueError(f"{path}: foreground weights must be finite and in [0, 1]")
    resized = Image.fromarray(weights).resize((width, height), Image.BILINEAR)
    return np.clip(np.asarray(resized), 0, 1).astype(np.float32)


def _refuse_upsampled(dataset: GazeDataset, sizes: list[tuple[int, int]]) -> None:
    """Images smaller than their input size would be upsampled, and a reconstruction model
    would learn the interpolation: refused, naming the first."""
    small = [(s, size) for s, size in zip(dataset.stimuli, sizes, strict=True)
             if s.height < size[0] or s.width < size[1]]  # fmt: skip
    if small:
        stimulus, (height, width) = small[0]
        where = f"{stimulus.path}, " if stimulus.path is not None else ""
        raise ValueError(
            f"DATA.SAMPLES.IMAGE: {len(small)} image(s) of {dataset.name} are smaller than "
            f"DATA.IMAGE_SIZE [{height}, {width}] (first: {stimulus.id!r}, {where}"
            f"{stimulus.width}x{stimulus.height}); lower DATA.IMAGE_SIZE or remove them"
        )


def log_left_out(dataset: GazeDataset, what: str, count: int) -> None:
    """Warn that ``count`` items (``what``) of ``dataset`` are left out; nothing when none."""
    if count:
        get_logger().warning("%s: %d %s left out", dataset.name, count, what)


@SAMPLES.register("labelled")
class LabelledImages(Added):
    """One item per image with its class (``label``, e.g. STL-10's): classification probes.
    Every image must have one (STL-10's ``unlabeled`` split has none)."""

    provides = (stacked("label", "label", np.int64),)

    def __init__(self, images: torch.utils.data.Dataset, dataset: GazeDataset) -> None:
        super().__init__(images)
        self.labels = [s.label for s in dataset.stimuli]
        unlabelled = [s.id for s in dataset.stimuli if s.label is None]
        if unlabelled:
            raise ValueError(
                f"DATA.SAMPLES 'labelled': {len(unlabelled)} image(s) of {dataset.name} have no "
                f"label (first: {unlabelled[0]!r})"
            )

    def __getitem__(self, index: int) -> Sample:
        return {**self.images[index], "label": np.array(self.labels[index], dtype=np.int64)}


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
        first_target = 0 if include_first else 1
        self._trains = [rows for rows in ordered_scanpaths(fix) if len(rows) > first_target]
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
