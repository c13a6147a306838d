"""Train/val/test and cross-validation splits, by image or by subject, deterministic from a seed.

Splitting by image keeps every fixation on an image on one side, so a model (or a centre bias)
never sees the image it is scored on. Index arrays come back sorted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from code.data.gaze import GazeDataset, stimulus_index


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


SPLIT_FILE = "split.json"  # what a run writes: its data set and the stimulus ids of each part


def write_split(path: Path, dataset_name: str, parts: dict[str, GazeDataset]) -> None:
    """Save the stimulus ids of each part (``{"train": ..., "val": ..., "test": ...}``)."""
    ids = {name: [s.id for s in part.stimuli] for name, part in parts.items()}
    path.write_text(json.dumps({"dataset": dataset_name, **ids}, indent=1))


def read_split(path: Path, dataset_name: str, part: str) -> list[str]:
    """The stimulus ids of one part (``train``, ``val`` or ``test``) of a run's
    :data:`SPLIT_FILE`, which must be of ``dataset_name``."""
    try:
        split = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read as a run's {SPLIT_FILE}: {err}") from err
    if not isinstance(split, dict) or not isinstance(split.get(part), list):
        raise ValueError(f"{path}: not a run's {SPLIT_FILE} (no {part!r} list)")
    if split.get("dataset") != dataset_name:
        raise ValueError(
            f"{path}: a split of data set {split.get('dataset')!r}, not of {dataset_name!r}"
        )
    return split[part]


def read_image_list(path: Path) -> list[str]:
    """Stimulus names, one per line (blank lines and ``#`` comments ignored)."""
    if not path.is_file():
        raise FileNotFoundError(f"image list not found: {path}")
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def select_images(dataset: GazeDataset, names: list[str], source: str) -> GazeDataset:
    """The stimuli ``names`` (ids, or unambiguous file stems) of ``dataset``, in data-set order;
    an unknown or repeated name is an error naming ``source``."""
    index_of = stimulus_index(dataset.stimuli)
    unknown = [name for name in names if name not in index_of]
    if unknown:
        count, examples = len(unknown), unknown[:5]
        raise ValueError(f"{source}: {count} name(s) are not stimuli of {dataset.name}: {examples}")
    chosen = [index_of[name] for name in names]
    repeated = sorted({names[k] for k, i in enumerate(chosen) if chosen.count(i) > 1})
    if repeated:
        raise ValueError(f"{source}: stimuli named more than once: {repeated[:5]}")
    if not chosen:
        raise ValueError(f"{source}: names no stimulus")
    return dataset.subset(sorted(chosen))
