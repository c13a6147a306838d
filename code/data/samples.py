"""Model-ready samples: a stimulus resized to the model's input size, its fixations rescaled.

A sample is a dict of numpy arrays (what the LMDB cache stores); ``collate`` turns a list of
samples of one size into a ``Batch``. ``SaliencySamples`` makes one sample per image (what is
cached); the ``DATA.SAMPLES`` choice decides what one training item is: the image with all its
fixations (``saliency``) or one scanpath with each fixation's history (``scanpath``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from code.data.batch import Batch
from code.data.gaze import GazeDataset
from code.registry import SAMPLES
from code.utils.logging import get_logger

Sample = dict[str, np.ndarray]


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An (H, W, 3) uint8 image resized bilinearly to (height, width); as is if it fits."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


class SaliencySamples(torch.utils.data.Dataset):
    """Sample i: image i resized to ``image_size`` = (height, width), with all its fixations.

    ``centerbias`` gives the baseline log-density for an image size; it is computed once per size.
    """

    def __init__(
        self,
        dataset: GazeDataset,
        image_size: tuple[int, int],
        centerbias: Callable[[int, int], np.ndarray],
    ) -> None:
        self.dataset = dataset
        self.image_size = image_size
        self._centerbias = centerbias(*image_size).astype(np.float32)
        fix = dataset.fixations
        order = np.argsort(fix.image, kind="stable")
        bounds = np.searchsorted(fix.image[order], np.arange(len(dataset.stimuli) + 1))
        self._rows = [order[a:b] for a, b in itertools.pairwise(bounds)]

    def __len__(self) -> int:
        return len(self.dataset.stimuli)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """The (height, width) of every sample, for shape-aware batching."""
        return [self.image_size] * len(self)

    def __getitem__(self, index: int) -> Sample:
        stimulus = self.dataset.stimuli[index]
        height, width = self.image_size
        image = stimulus.read()
        if image.shape[:2] != (stimulus.height, stimulus.width):
            raise ValueError(
                f"image {stimulus.id!r} ({stimulus.path}) is {image.shape[1]}x{image.shape[0]}, "
                f"but its data set says {stimulus.width}x{stimulus.height}"
            )
        image = resize_rgb(image, height, width)
        fix = self.dataset.fixations.select(self._rows[index])
        scale = np.array([width / stimulus.width, height / stimulus.height])
        return {
            "image": image,
            "fixations": (np.stack([fix.x, fix.y], axis=1) * scale).astype(np.float32),
            "centerbias": self._centerbias,
            "image_index": np.array(index, dtype=np.int64),
            "original_size": np.array(stimulus.size, dtype=np.int64),
        }


@SAMPLES.register("saliency")
def saliency_samples(images: torch.utils.data.Dataset) -> torch.utils.data.Dataset:
    """One item per image with all its fixations (the spatial models' training items)."""
    return images


@SAMPLES.register("scanpath")
class ScanpathSamples(torch.utils.data.Dataset):
    """One item per scanpath: its image, and each fixation with the ``history_length`` before it.

    ``include_first``: whether the first fixation of a scanpath is a target too (with an empty
    history). Data recorded after a central fixation cross (OSIE, MIT1003, ...) usually leave it
    out, as DeepGaze III does: it mostly reflects the cross, not the image. A scanpath without
    targets is skipped and counted.
    """

    def __init__(
        self,
        images: torch.utils.data.Dataset,
        dataset: GazeDataset,
        history_length: int,
        include_first: bool,
    ) -> None:
        if history_length < 1:
            raise ValueError(f"scanpath HISTORY_LENGTH must be at least 1, got {history_length}")
        self.images = images
        self.dataset = dataset
        self.history_length = history_length
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


def _pad(arrays: list[np.ndarray], length: int, fill: float | bool) -> torch.Tensor:
    """Stack arrays along a new first axis, padding their first axis to ``length``."""
    out = np.full((len(arrays), length, *arrays[0].shape[1:]), fill, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return torch.from_numpy(out)


def collate(samples: list[Sample]) -> Batch:
    """Stack samples of one image size; fixations are padded to the longest list and masked.

    Optional entries (segments, fixation history) are taken when the samples have them.
    """
    sizes = {s["image"].shape for s in samples}
    if len(sizes) > 1:
        raise ValueError(f"a batch must hold images of one size, got {sorted(sizes)}")
    longest = max(len(s["fixations"]) for s in samples)
    mask = _pad([np.ones(len(s["fixations"]), dtype=bool) for s in samples], longest, False)
    images = torch.from_numpy(np.stack([s["image"] for s in samples]))
    optional = {}
    first = samples[0]
    if "segments" in first:
        optional["segments"] = torch.from_numpy(
            np.stack([s["segments"] for s in samples]).astype(np.int64)
        )
    if "history" in first:
        optional["history"] = _pad([s["history"] for s in samples], longest, 0.0)
        optional["history_mask"] = _pad([s["history_mask"] for s in samples], longest, False)
        optional["fixation_rows"] = _pad([s["fixation_rows"] for s in samples], longest, -1)
    return Batch(
        image=images.permute(0, 3, 1, 2).float().div(255),
        fixations=_pad([s["fixations"] for s in samples], longest, 0.0),
        fixation_mask=mask,
        centerbias=torch.from_numpy(np.stack([s["centerbias"] for s in samples])),
        image_index=torch.from_numpy(np.stack([s["image_index"] for s in samples])),
        original_size=torch.from_numpy(np.stack([s["original_size"] for s in samples])),
        **optional,
    )
