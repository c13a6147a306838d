"""pysaliency's HDF5 exports: a data set handed over from pysaliency (``DATA.DATASET.NAME:
pysaliency``).

On disk, as pysaliency 0.2 writes them (``h5py`` reads them: ``uv sync --extra pysaliency``)::

    STIMULI      FileStimuli.to_hdf5: attribute type 'FileStimuli', ``filenames`` (image files,
                 relative to the HDF5 file's folder from version 2.0 on) and ``shapes``;
                 or Stimuli.to_hdf5: type 'Stimuli', one dataset per image named 0, 1, ...
                 ((H, W) or (H, W, 3) uint8), attribute ``size``.
    FIXATIONS    FixationTrains.to_hdf5: type 'FixationTrains', ``train_xs``, ``train_ys``
                 (scanpaths, padded with NaN), ``train_ns`` (stimulus index), ``train_subjects``;
                 or Fixations.to_hdf5: type 'Fixations', ``x``, ``y``, ``n``, ``subjects``.

Stimulus ids: a file's path below the folder all the files share (``1001.jpg``,
``Action/001.jpg``), an in-file image's index ("0", "1", ...). Coordinates are pysaliency's,
0-based pixels as here. The fixations of a ``Fixations`` file keep no scanpath (pysaliency
stores each one's history, not the train it belongs to): each is a scanpath of its own; export
``FixationTrains`` for scanpath models.
Times are left unknown (NaN): pysaliency's ``t`` has no fixed unit.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from code.data.gaze import GazeDataset, Scanpath, Stimulus
from code.data.loaders.common import build_dataset, file_stimulus
from code.registry import DATASETS

STIMULI_TYPES = ("FileStimuli", "Stimuli")
FIXATION_TYPES = ("FixationTrains", "Fixations")


@DATASETS.register("pysaliency")
def load_pysaliency(stimuli: str, fixations: str) -> GazeDataset:
    """The stimuli and fixations of two pysaliency HDF5 exports (``to_hdf5`` files)."""
    stimuli_path, fixations_path = Path(stimuli), Path(fixations)
    for path in (stimuli_path, fixations_path):  # both, before any image header is read
        if not path.is_file():
            raise FileNotFoundError(f"pysaliency export not found: {path}")
    with open_export(stimuli_path, STIMULI_TYPES) as (kind, source):
        read = read_file_stimuli if kind == "FileStimuli" else read_array_stimuli
        images = read(source, stimuli_path)
    with open_export(fixations_path, FIXATION_TYPES) as (kind, source):
        read = read_fixation_trains if kind == "FixationTrains" else read_fixations
        scanpaths = read(source, fixations_path, len(images))
    name = stimuli_path.parent.name or "pysaliency"
    return build_dataset(
        name, images, scanpaths, (Counter(), Counter()), [stimuli_path, fixations_path]
    )


@contextmanager
def open_export(path: Path, types: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """The HDF5 file ``path`` and its pysaliency type, refused with a message naming the file
    unless it is a pysaliency export of one of ``types``."""
    try:
        file = _h5py().File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not an HDF5 file (pysaliency's to_hdf5): {err}") from None
    with file:
        kind = _text(file.attrs.get("type", b""))
        if kind not in types:
            raise ValueError(
                f"{path}: a pysaliency export of {' or '.join(types)} expected, found type "
                f"{kind or 'none'!r}"
            )
        yield kind, file


def read_file_stimuli(source: Any, path: Path) -> list[Stimulus]:
    """The image files a ``FileStimuli`` export names, their sizes from the files' headers; each
    named by its path below the folder all of them share."""
    names = [_text(name) for name in _dataset(source, "filenames", path)]
    if not names:
        raise ValueError(f"{path}: the export holds no stimuli")
    relative = _text(source.attrs.get("version", b"1.0")) >= "2.0"
    files = [Path(os.path.normpath(path.parent / name if relative else name)) for name in names]
    shared = Path(os.path.commonpath([file.parent for file in files]))
    return [file_stimulus(file, file.relative_to(shared).as_posix()) for file in files]


def read_array_stimuli(source: Any, path: Path) -> list[Stimulus]:
    """The images stored in a ``Stimuli`` export, each read from the file when needed."""
    stimuli = []
    for index in range(int(source.attrs.get("size", 0))):
        shape = _entry(source, str(index), path).shape
        if len(shape) not in (2, 3):
            raise ValueError(f"{path}: image {index} has shape {shape}, not (H, W[, 3])")
        read = partial(read_stored_image, path, str(index))
        stimuli.append(Stimulus(str(index), shape[0], shape[1], None, generate=read))
    return stimuli


def read_stored_image(path: Path, key: str) -> np.ndarray:
    """Image ``key`` of a ``Stimuli`` export as (H, W, 3) uint8 (grey images repeated)."""
    with _h5py().File(path, "r") as file:
        image = np.asarray(file[key][...], dtype=np.uint8)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def read_fixation_trains(source: Any, path: Path, n_images: int) -> list[Scanpath]:
    """One scanpath per row of a ``FixationTrains`` export, its NaN padding removed."""
    xs, ys = _dataset(source, "train_xs", path), _dataset(source, "train_ys", path)
    images = _images(_dataset(source, "train_ns", path), path, n_images)
    subjects = _dataset(source, "train_subjects", path).astype(np.int64)
    scanpaths = []
    for x, y, image, subject in zip(xs, ys, images, subjects, strict=True):
        kept = ~np.isnan(x)
        unknown = np.full(int(kept.sum()), np.nan)
        scanpaths.append(Scanpath(int(image), int(subject), x[kept], y[kept], unknown, unknown))
    return scanpaths


def read_fixations(source: Any, path: Path, n_images: int) -> list[Scanpath]:
    """Each fixation of a ``Fixations`` export as a scanpath of its own (see the module)."""
    xs, ys = _dataset(source, "x", path), _dataset(source, "y", path)
    images = _images(_dataset(source, "n", path), path, n_images)
    subjects = _dataset(source, "subjects", path).astype(np.int64)
    unknown = np.full(1, np.nan)
    return [
        Scanpath(int(image), int(subject), np.array([x]), np.array([y]), unknown, unknown)
        for x, y, image, subject in zip(xs, ys, images, subjects, strict=True)
    ]


def _images(indices: np.ndarray, path: Path, n_images: int) -> np.ndarray:
    """Stimulus indices, refused (naming the file) where they name no stimulus."""
    indices = indices.astype(np.int64)
    outside = (indices < 0) | (indices >= n_images)
    if outside.any():
        raise ValueError(
            f"{path}: fixations on stimulus {int(indices[outside][0])}, but the stimuli export "
            f"holds {n_images} (indices 0 to {n_images - 1})"
        )
    return indices


def _entry(source: Any, key: str, path: Path) -> Any:
    """The HDF5 dataset ``key``, not yet read; a missing one is named with the file."""
    if key not in source:
        raise KeyError(f"{path}: no dataset {key!r} (found: {', '.join(sorted(source))})")
    return source[key]


def _dataset(source: Any, key: str, path: Path) -> np.ndarray:
    return _entry(source, key, path)[...]


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "the pysaliency data set reads HDF5 files with h5py: install the extra "
            "(uv sync --extra pysaliency, or pip install h5py)"
        ) from None
    return h5py
