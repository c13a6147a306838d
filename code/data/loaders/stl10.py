"""STL-10 binary release (Coates, Lee, Ng, AISTATS 2011): images for linear probes, no gaze.

On disk (``stl10_binary/``)::

    <root>/<split>_X.bin     uint8, N × 3 × 96 × 96, each channel plane stored column-major
                             (MATLAB order); split is train, test or unlabeled
    <root>/<split>_y.bin     uint8 labels 1..10 (absent for unlabeled)
    <root>/class_names.txt   one name per line

``load_stl10`` memory-maps the images (nothing is read until indexed) and returns labels 0..9
(-1 for unlabeled). It is registered in ``DATASETS`` so configs can name it, but it is not a
``GazeDataset``: there are no fixations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from code.registry import DATASETS

SIDE = 96


@dataclass
class STL10Images:
    """Images (N, 96, 96, 3) uint8 RGB (a memory map) and labels (N,) int64, -1 when unlabeled."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.ascontiguousarray(self.images[i]), int(self.labels[i])


@DATASETS.register("stl10")
def load_stl10(root: str, split: str) -> STL10Images:
    """Memory-map one split (``train``, ``test`` or ``unlabeled``) of the STL-10 binaries."""
    base = Path(root)
    x_path, y_path = base / f"{split}_X.bin", base / f"{split}_y.bin"
    if not x_path.is_file():
        raise FileNotFoundError(f"STL-10 image file not found: {x_path}")
    plane = 3 * SIDE * SIDE
    if x_path.stat().st_size % plane:
        raise ValueError(
            f"{x_path}: size {x_path.stat().st_size} is not a multiple of 3×96×96 bytes"
        )
    raw = np.memmap(x_path, dtype=np.uint8, mode="r").reshape(-1, 3, SIDE, SIDE)
    # Column-major planes: raw[n, c, col, row]; view as (n, row, col, c) without copying.
    images = raw.transpose(0, 3, 2, 1)
    if split == "unlabeled":
        labels = np.full(len(images), -1, dtype=np.int64)
    else:
        if not y_path.is_file():
            raise FileNotFoundError(f"STL-10 label file not found: {y_path}")
        labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
        if len(labels) != len(images) or labels.min() < 0 or labels.max() > 9:
            raise ValueError(f"{y_path}: expected {len(images)} labels in 1..10")
    names_path = base / "class_names.txt"
    class_names = names_path.read_text().split() if names_path.is_file() else []
    return STL10Images(f"stl10-{split}", images, labels, class_names)
