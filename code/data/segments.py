"""Segment label maps for segment-aware blocks (SPADE, cross-attention), chosen by DATA.SEGMENTS.

A segmenter turns one model-input image into an (H, W) int32 label map, labels 0..K-1. The
label maps are added to the per-image samples (``SegmentedSamples``) before those are cached, so
they are computed once and stored with the data.

- ``none``: no segments (the batch has none; blocks that need them refuse to build).
- ``files``: label maps made offline (e.g. by SAM), ``DIR/<image stem>.npy`` or ``.png``, at
  any resolution (resized with nearest neighbour); labels are renumbered 0..K-1 in order of
  value. **Fallback**: an image without a file gets one segment covering the whole image; such
  images are counted and logged when the samples are built.
- ``kmeans``: k-means on the model encoder's own features (``code.models.segmenters``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from code.data.batch import Sample, stacked
from code.data.gaze import GazeDataset, Stimulus
from code.data.samples import Added
from code.registry import SEGMENTERS
from code.utils.logging import get_logger

SEGMENTS = stacked("segments", "segments", np.int64)


class Segmenter:
    """Makes an (H, W) label map for a stimulus shown as ``image`` (H, W, 3 uint8)."""

    VERSION = 1
    provides = (SEGMENTS,)

    def __call__(self, image: np.ndarray, stimulus: Stimulus) -> np.ndarray:
        raise NotImplementedError

    def has_segments(self, stimulus: Stimulus) -> bool:
        """False when ``stimulus`` gets the fallback segmentation."""
        return True

    def content_key(self) -> dict[str, Any]:
        """What, beyond DATA.SEGMENTS, changes the label maps (for the cache key): at least the
        segmenter's ``VERSION``, bumped when its code makes other maps from the same input."""
        return {"version": self.VERSION}


@SEGMENTERS.register("none")
def no_segments() -> None:
    """No segment maps: the default for models without segment-aware blocks."""
    return None


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..K-1 in order of value (file labels may have gaps, e.g. SAM ids)."""
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)


def resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize: output pixel centres sampled in the input label map."""
    rows = ((np.arange(height) + 0.5) * labels.shape[0] / height).astype(int)
    cols = ((np.arange(width) + 0.5) * labels.shape[1] / width).astype(int)
    return labels[rows[:, None], cols[None, :]]


@SEGMENTERS.register("files")
class SegmentFiles(Segmenter):
    """Label maps read from ``dir`` (``<stem>.npy`` or ``<stem>.png``, stem of the image id)."""

    def __init__(self, dir: str) -> None:
        self.dir = Path(dir)
        if not self.dir.is_dir():
            raise FileNotFoundError(
                f"segment folder not found: {self.dir} (DATA.SEGMENTS.FILES.DIR)"
            )

    def _path(self, stimulus: Stimulus) -> Path | None:
        stem = Path(stimulus.id).stem
        for suffix in (".npy", ".png"):
            if (path := self.dir / f"{stem}{suffix}").is_file():
                return path
        return None

    def has_segments(self, stimulus: Stimulus) -> bool:
        return self._path(stimulus) is not None

    def __call__(self, image: np.ndarray, stimulus: Stimulus) -> np.ndarray:
        path = self._path(stimulus)
        height, width = image.shape[:2]
        if path is None:
            return np.zeros((height, width), dtype=np.int32)  # the documented fallback
        if path.suffix == ".npy":
            labels = np.load(path)
        else:
            with Image.open(path) as file:
                labels = np.asarray(file)
        if labels.ndim == 3:  # a colour-coded PNG: one label per distinct colour
            labels = labels[..., 0].astype(np.int64) << 16 | labels[..., 1] << 8 | labels[..., 2]
        if labels.ndim != 2:
            raise ValueError(f"{path}: a segment map must be (H, W), got shape {labels.shape}")
        return relabel(resize_nearest(labels, height, width))

    def content_key(self) -> dict[str, Any]:
        files = sorted(self.dir.iterdir())
        return {
            **super().content_key(),
            "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        }


class SegmentedSamples(Added):
    """Per-image samples with a ``segments`` label map (H, W) added by ``segmenter`` (whose
    ``content_key`` carries the version of its own code)."""

    VERSION = 1
    provides = (SEGMENTS,)

    def __init__(
        self, images: torch.utils.data.Dataset, dataset: GazeDataset, segmenter: Segmenter
    ) -> None:
        super().__init__(images)
        self.dataset = dataset
        self.segmenter = segmenter
        fallback = sum(not segmenter.has_segments(s) for s in dataset.stimuli)
        if fallback:
            get_logger().warning(
                "%s: %d of %d images have no segment map; each gets one segment covering "
                "the whole image",
                dataset.name,
                fallback,
                len(dataset.stimuli),
            )
        self.fallback_count = fallback

    def __getitem__(self, index: int) -> Sample:
        sample = dict(self.images[index])
        sample["segments"] = self.segmenter(sample["image"], self.dataset.stimuli[index])
        return sample
