"""Segments made by the model's own encoder: ``DATA.SEGMENTS.NAME: kmeans``.

k-means on the configured encoder's features (all maps on the finest grid, standardised per
channel), ``NUM_SEGMENTS`` clusters per image, labels upsampled to the image. The label maps are
added to the per-image samples like segment files (``code.data.segments``), so they are cached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from code.data.gaze import Stimulus
from code.data.segments import Segmenter, relabel
from code.models.layers.feature_maps import concat_on_grid, finest_stride
from code.registry import SEGMENTERS


@SEGMENTERS.register("kmeans")
class KMeansSegmenter(Segmenter):
    """``num_segments`` k-means clusters of the encoder's feature vectors, per image."""

    def __init__(
        self, num_segments: int, iterations: int, encoder: Callable[[], torch.nn.Module]
    ) -> None:
        """``encoder`` builds the configured model encoder (with its weights, seeded)."""
        if num_segments < 1 or iterations < 1:
            raise ValueError("kmeans NUM_SEGMENTS and ITERATIONS must be at least 1")
        self.num_segments = num_segments
        self.iterations = iterations
        self._make_encoder = encoder
        self._encoder: torch.nn.Module | None = None
        self._weights_digest: str | None = None

    @torch.no_grad()
    def __call__(self, image: np.ndarray, stimulus: Stimulus) -> np.ndarray:
        if self._encoder is None:
            self._encoder = self._make_encoder().eval()
        encoder = self._encoder
        height, width = image.shape[:2]
        x = torch.tensor(image).permute(2, 0, 1)[None].float().div(255)  # copy: may be read-only
        shapes = encoder.output_shapes
        stride = finest_stride(shapes)
        grid = concat_on_grid(encoder(x), shapes, stride, (height, width))[0]
        points = grid.flatten(1).T  # (positions, channels)
        points = (points - points.mean(0)) / (points.std(0) + 1e-6)
        labels = kmeans(points, self.num_segments, self.iterations, seed=0).view(grid.shape[1:])
        labels = labels.repeat_interleave(stride, 0).repeat_interleave(stride, 1)
        return relabel(labels[:height, :width].numpy())

    def content_key(self) -> dict[str, Any]:
        """The encoder's configuration and a digest of its initial weights: code that builds or
        initialises it differently makes other segments, and changes the key with them."""
        if self._weights_digest is None:  # once: each split's cache asks
            digest = hashlib.sha256()
            for name, tensor in self._make_encoder().state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._weights_digest = digest.hexdigest()
        return {**super().content_key(), "encoder": repr(self._make_encoder),
                "weights": self._weights_digest}  # fmt: skip


def kmeans(points: torch.Tensor, k: int, iterations: int, seed: int) -> torch.Tensor:
    """Cluster index of each row of ``points``; k-means++ initialisation, Lloyd iterations."""
    generator = torch.Generator().manual_seed(seed)
    k = min(k, len(points))
    norms = (points**2).sum(1, keepdim=True)
    centres = points[torch.randint(len(points), (1,), generator=generator)]
    for _ in range(1, k):
        nearest = _squared_distances(points, norms, centres).min(1).values
        pick = torch.multinomial(nearest.clamp(min=0) + 1e-12, 1, generator=generator)
        centres = torch.cat([centres, points[pick]])
    for _ in range(iterations):
        labels = _squared_distances(points, norms, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=k)[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)  # keep empty ones
    return _squared_distances(points, norms, centres).argmin(1)


def _squared_distances(
    points: torch.Tensor, norms: torch.Tensor, centres: torch.Tensor
) -> torch.Tensor:
    """(N, K) squared Euclidean distances, as one matrix product (far faster than cdist here);
    ``norms``: the points' squared norms (N, 1)."""
    return norms - 2 * points @ centres.T + (centres**2).sum(1)
