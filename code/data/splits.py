"""Train/val/test and cross-validation splits, by image or by subject, deterministic from a seed.

Splitting by image keeps every fixation on an image on one side, so a model (or a centre bias)
never sees the image it is scored on. Index arrays come back sorted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from code.data.gaze import GazeDataset


@dataclass(frozen=True)
class Split:
    """Sorted indices (of images, or subject ids) on each side of a split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_indices(items: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Shuffle ``items`` with ``seed`` and cut off rounded val and test fractions."""
    if not (val_fraction >= 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"need 0 <= val_fraction, test_fraction and their sum < 1, "
            f"got {val_fraction} and {test_fraction}"
        )
    order = np.random.default_rng(seed).permutation(np.asarray(items))
    n_val, n_test = round(val_fraction * len(order)), round(test_fraction * len(order))
    return Split(
        train=np.sort(order[n_val + n_test :]),
        val=np.sort(order[:n_val]),
        test=np.sort(order[n_val : n_val + n_test]),
    )


def split_by_image(
    dataset: GazeDataset, val_fraction: float, test_fraction: float, seed: int
) -> Split:
    """Image indices for train/val/test; use ``dataset.subset(split.train)`` etc."""
    return split_indices(np.arange(len(dataset.stimuli)), val_fraction, test_fraction, seed)


def kfold_by_image(n_images: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) image indices for each of ``folds`` folds; every image is tested once."""
    if not 2 <= folds <= n_images:
        raise ValueError(f"need 2 <= folds <= {n_images} images, got {folds}")
    order = np.random.default_rng(seed).permutation(n_images)
    parts = np.array_split(order, folds)
    return [
        (np.sort(np.concatenate(parts[:k] + parts[k + 1 :])), np.sort(parts[k]))
        for k in range(folds)
    ]


def split_by_subject(
    dataset: GazeDataset, val_fraction: float, test_fraction: float, seed: int
) -> Split:
    """Subject ids for train/val/test; use ``select_subjects`` to cut the data set."""
    return split_indices(dataset.subjects, val_fraction, test_fraction, seed)


def select_subjects(dataset: GazeDataset, subjects: np.ndarray) -> GazeDataset:
    """All images, with only the fixations of ``subjects``."""
    fix = dataset.fixations.select(np.isin(dataset.fixations.subject, subjects))
    return GazeDataset(
        name=dataset.name,
        stimuli=dataset.stimuli,
        fixations=fix,
        skipped=dataset.skipped,
        adjusted=dataset.adjusted,
        sources=dataset.sources,
    )
