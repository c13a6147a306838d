"""Mr-CNN's training items: per image, points where people looked and points where they did not.

Each image's fixation map (its fixations counted per pixel of the model input, blurred by a
Gaussian of ``sigma`` input pixels, scaled to a maximum of 1) gives the candidates: pixels above
``positive_above`` are fixated, pixels below ``negative_below`` are not. ``positives`` and
``negatives`` of them are drawn per image (with replacement only when there are fewer
candidates), at pixel centres, anew every epoch from a generator seeded by (``SEED``, epoch,
image); validation and test items keep the epoch-0 draw.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from code.data.batch import Sample, stacked
from code.data.gaze import GazeDataset
from code.data.samples import SelectedImages, log_left_out, needing
from code.data.transforms import EpochSeeded
from code.registry import SAMPLES, ConfigError

POINTS = (stacked("points", "points", None), stacked("point_labels", "point_labels", None))
# Keeps these draws apart from the DATA.TRANSFORMS ones, which are seeded by (SEED, epoch, item).
STREAM = 1


def fixation_map(fixations: np.ndarray, height: int, width: int, sigma: float) -> np.ndarray:
    """(height, width): (N, 2) fixations (x, y) counted per pixel, blurred, maximum 1."""
    counts = np.zeros((height, width))
    cols = np.clip(fixations[:, 0].astype(int), 0, width - 1)
    rows = np.clip(fixations[:, 1].astype(int), 0, height - 1)
    np.add.at(counts, (rows, cols), 1.0)
    blurred = gaussian_filter(counts, sigma, mode="constant")
    return blurred / blurred.max()


def draw(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(candidates, size=count, replace=len(candidates) < count)


@SAMPLES.register("patches")
class PatchSamples(SelectedImages, EpochSeeded):
    """One item per image with fixations: the image, its fixations and centre bias, and
    ``points`` (P, 2) with ``point_labels`` (P,), 1 fixated / 0 not, positives first (see the
    module docstring). Images without fixations are left out and counted."""

    provides = POINTS

    def __init__(
        self,
        images: torch.utils.data.Dataset,
        dataset: GazeDataset,
        seed: int,
        positives: int,
        negatives: int,
        sigma: float,
        positive_above: float,
        negative_below: float,
    ) -> None:
        if positives < 1 or negatives < 1:
            raise ConfigError("must be at least 1", key="POSITIVES and NEGATIVES")
        if sigma <= 0:
            raise ConfigError(f"must be positive, got {sigma}", key="SIGMA")
        if not 0 < negative_below <= positive_above < 1:
            raise ConfigError(
                f"need 0 < NEGATIVE_BELOW ({negative_below}) <= POSITIVE_ABOVE "
                f"({positive_above}) < 1",
                key="",
            )
        super().__init__(needing(images, "fixations", "patches"))
        self.seed = seed
        self.counts = (positives, negatives)
        self.sigma = sigma
        self.thresholds = (positive_above, negative_below)
        rows = dataset.fixations.rows_by_image(len(dataset.stimuli))
        self._images = np.array([i for i, r in enumerate(rows) if len(r)], dtype=np.int64)
        self._stimuli = dataset.stimuli
        log_left_out(dataset, "image(s) without fixations", len(rows) - len(self._images))

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image = int(self._images[index])
        sample = dict(self.images[image])
        height, width = sample["image"].shape[:2]
        density = fixation_map(sample["fixations"], height, width, self.sigma).ravel()
        above, below = self.thresholds
        fixated, not_fixated = np.flatnonzero(density > above), np.flatnonzero(density < below)
        if len(not_fixated) == 0:
            raise ValueError(
                f"image {self._stimuli[image].id!r}: no pixel of its fixation map is below the "
                f"patches items' NEGATIVE_BELOW {below} (SIGMA {self.sigma} too large for its "
                "fixations?)"
            )
        rng = np.random.default_rng([self.seed, epoch, image, STREAM])
        chosen = np.concatenate(
            [draw(fixated, self.counts[0], rng), draw(not_fixated, self.counts[1], rng)]
        )
        rows, cols = np.divmod(chosen, width)
        sample["points"] = np.stack([cols + 0.5, rows + 0.5], axis=1).astype(np.float32)
        sample["point_labels"] = np.repeat([1.0, 0.0], self.counts).astype(np.float32)
        return sample
