"""Model-ready samples: a stimulus resized to the model's input size, its fixations rescaled.

A sample is a dict of numpy arrays (what the LMDB cache stores); ``collate`` turns a list of
samples of one size into a ``Batch``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from code.data.batch import Batch
from code.data.gaze import GazeDataset

Sample = dict[str, np.ndarray]


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
        if image.shape[:2] != (height, width):
            image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        fix = self.dataset.fixations.select(self._rows[index])
        scale = np.array([width / stimulus.width, height / stimulus.height])
        return {
            "image": image,
            "fixations": (np.stack([fix.x, fix.y], axis=1) * scale).astype(np.float32),
            "centerbias": self._centerbias,
            "image_index": np.array(index, dtype=np.int64),
            "original_size": np.array(stimulus.size, dtype=np.int64),
        }


def collate(samples: list[Sample]) -> Batch:
    """Stack samples of one image size; fixations are padded to the longest list and masked."""
    sizes = {s["image"].shape for s in samples}
    if len(sizes) > 1:
        raise ValueError(f"a batch must hold images of one size, got {sorted(sizes)}")
    longest = max(len(s["fixations"]) for s in samples)
    fixations = torch.zeros(len(samples), longest, 2)
    mask = torch.zeros(len(samples), longest, dtype=torch.bool)
    for i, s in enumerate(samples):
        fixations[i, : len(s["fixations"])] = torch.from_numpy(s["fixations"])
        mask[i, : len(s["fixations"])] = True
    images = torch.from_numpy(np.stack([s["image"] for s in samples]))
    return Batch(
        image=images.permute(0, 3, 1, 2).float().div(255),
        fixations=fixations,
        fixation_mask=mask,
        centerbias=torch.from_numpy(np.stack([s["centerbias"] for s in samples])),
        image_index=torch.from_numpy(np.stack([s["image_index"] for s in samples])),
        original_size=torch.from_numpy(np.stack([s["original_size"] for s in samples])),
    )
