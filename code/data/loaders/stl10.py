"""STL-10 binary release (Coates, Lee, Ng, AISTATS 2011): labelled images, no gaze.

On disk (``stl10_binary/``)::

    <root>/<split>_X.bin     uint8, N × 3 × 96 × 96, each channel plane stored column-major
                             (MATLAB order); split is train, test or unlabeled
    <root>/<split>_y.bin     uint8 labels 1..10 (absent for unlabeled)
    <root>/class_names.txt   one name per line (optional)

``load_stl10`` gives a data set of images without fixations whose stimuli carry their label
(0..9; none for ``unlabeled``). Images are read from a memory map when a sample needs them, so
the 100,000 unlabeled images cost nothing until used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from code.data.gaze import Fixations, GazeDataset, Stimulus
from code.registry import DATASETS

SIDE = 96
SPLITS = ("train", "test", "unlabeled")


class STL10Reader:
    """Image ``i`` of one ``_X.bin`` file; the memory map is opened on first use (in each
    DataLoader worker), and only the path is pickled."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._images: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_images": None}

    def image(self, index: int) -> np.ndarray:
        if self._images is None:
            raw = np.memmap(self.path, dtype=np.uint8, mode="r").reshape(-1, 3, SIDE, SIDE)
            # Column-major planes: raw[n, c, col, row]; view as (n, row, col, c) without copying.
            self._images = raw.transpose(0, 3, 2, 1)
        return np.ascontiguousarray(self._images[index])


class _Image:
    """The zero-argument reader a stimulus calls (picklable, unlike a lambda)."""

    def __init__(self, reader: STL10Reader, index: int) -> None:
        self.reader, self.index = reader, index

    def __call__(self) -> np.ndarray:
        return self.reader.image(self.index)


@DATASETS.register("stl10")
def load_stl10(root: str, split: str) -> GazeDataset:
    """One split (``train``, ``test`` or ``unlabeled``) of the STL-10 binaries in ``root``."""
    if split not in SPLITS:
        raise ValueError(f"DATA.DATASET.STL10.SPLIT must be one of {SPLITS}, got {split!r}")
    base = Path(root)
    x_path, y_path = base / f"{split}_X.bin", base / f"{split}_y.bin"
    if not x_path.is_file():
        raise FileNotFoundError(f"STL-10 image file not found: {x_path}")
    plane = 3 * SIDE * SIDE
    size = x_path.stat().st_size
    if size == 0 or size % plane:
        raise ValueError(f"{x_path}: size {size} bytes is not a positive multiple of 3×96×96")
    count = size // plane
    if split == "unlabeled":
        labels: list[int | None] = [None] * count
        sources = [x_path]
    else:
        if not y_path.is_file():
            raise FileNotFoundError(f"STL-10 label file not found: {y_path}")
        raw_labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64)
        if len(raw_labels) != count or raw_labels.min() < 1 or raw_labels.max() > 10:
            raise ValueError(
                f"{y_path}: expected {count} labels in 1..10 (one per image of {x_path.name}), "
                f"got {len(raw_labels)} in {raw_labels.min()}..{raw_labels.max()}"
            )
        labels = [int(label) - 1 for label in raw_labels]
        sources = [x_path, y_path]
    reader = STL10Reader(x_path)
    stimuli = [
        Stimulus(f"{split}/{i:06d}", SIDE, SIDE, None, generate=_Image(reader, i), label=label)
        for i, label in enumerate(labels)
    ]
    return GazeDataset(f"stl10-{split}", stimuli, Fixations.empty(), sources=sources)
