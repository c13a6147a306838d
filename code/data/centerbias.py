"""The centre bias: where people look regardless of the image.

It lives with the data because training samples carry its log-density (the finalizer adds it to
every prediction) and models keep it for prediction; the metrics use it as their baseline.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, zoom

from code.data.gaze import GazeDataset


class CenterBias:
    """Where people look regardless of the image: a density over normalised coordinates.

    Fitted as a Gaussian kernel density of the fixations' positions relative to their image
    size (x/width, y/height), mixed with a uniform density so that no pixel has zero
    probability. Evaluated on any image size, so it serves images of every shape.
    """

    GRID = 128  # resolution of the normalised density; fine enough for a smooth bandwidth

    def __init__(self, bandwidth: float, uniform_weight: float) -> None:
        if not 0 < bandwidth < 1:
            raise ValueError(
                f"centre-bias bandwidth must be in (0, 1) of the image size, got {bandwidth}"
            )
        if not 0 <= uniform_weight <= 1:
            raise ValueError(f"centre-bias uniform weight must be in [0, 1], got {uniform_weight}")
        self.bandwidth = bandwidth
        self.uniform_weight = uniform_weight
        self.density: np.ndarray | None = None
        # the last size asked for and its map: data sets often hold one image size
        self._last: tuple[tuple[int, int], np.ndarray] | None = None

    @classmethod
    def from_density(
        cls, bandwidth: float, uniform_weight: float, density: np.ndarray
    ) -> CenterBias:
        """A centre bias fitted before: its normalised ``GRID`` × ``GRID`` density (read back
        from a file, e.g. with a fitted map density)."""
        if density.shape != (cls.GRID, cls.GRID):
            raise ValueError(f"centre-bias density must be {cls.GRID}x{cls.GRID}: {density.shape}")
        if not (np.isfinite(density).all() and (density >= 0).all()):
            raise ValueError("centre-bias density must be finite and non-negative")
        if abs(density.sum() - 1) > 1e-9:
            raise ValueError(f"centre-bias density sums to {density.sum()}, not 1")
        model = cls(bandwidth, uniform_weight)
        model.density = density
        return model

    def fit(self, dataset: GazeDataset) -> CenterBias:
        """Fit on every fixation of ``dataset`` (pass the training images only)."""
        fix = dataset.fixations
        if len(fix) == 0:
            raise ValueError(f"{dataset.name}: cannot fit a centre bias without fixations")
        heights = np.array([s.height for s in dataset.stimuli], dtype=np.float64)[fix.image]
        widths = np.array([s.width for s in dataset.stimuli], dtype=np.float64)[fix.image]
        counts, _, _ = np.histogram2d(
            fix.y / heights, fix.x / widths, bins=self.GRID, range=[[0, 1], [0, 1]]
        )
        smooth = gaussian_filter(counts, sigma=self.bandwidth * self.GRID, mode="constant")
        self.density = smooth / smooth.sum()
        self._last = None
        return self

    def log_density(self, height: int, width: int) -> np.ndarray:
        """log p over the pixels of an image of the given size (sums to 1 in p).

        The array is shared between calls for the same size: do not modify it.
        """
        if self.density is None:
            raise RuntimeError("CenterBias.log_density called before fit")
        last = self._last  # one read: threads may replace it meanwhile
        if last is not None and last[0] == (height, width):
            return last[1]
        resized = zoom(self.density, (height / self.GRID, width / self.GRID), order=1)
        resized = np.clip(resized, 0, None)
        p = (1 - self.uniform_weight) * resized / resized.sum()
        p += self.uniform_weight / (height * width)
        log_p = np.log(p)
        self._last = ((height, width), log_p)
        return log_p
