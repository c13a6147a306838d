"""Our feature-resolution semantic painting equals the seed's full-resolution one, brought back
to the patch grid (the identity ``benchmarks/painting.py`` checks at ViT-L size), on tiny cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks.painting import (
    STRIDE,
    TOLERANCE,
    method_call,
    painted_means,
    relative_difference,
    voronoi_labels,
)
from code.models.layers.segments import segment_means, segment_membership


def pixel_noise_labels(
    height: int, width: int, count: int, generator: torch.Generator
) -> torch.Tensor:
    """(1, H, W) labels drawn per pixel: every patch is split among all segments."""
    return torch.randint(count, (1, height, width), generator=generator)


@pytest.mark.parametrize("labels", [voronoi_labels, pixel_noise_labels])
def test_full_resolution_painting_pooled_to_the_grid_is_ours(labels) -> None:
    generator = torch.Generator().manual_seed(0)
    grid = (3, 4)
    segments = labels(grid[0] * STRIDE, grid[1] * STRIDE, 5, generator)
    assert torch.equal(torch.unique(segments), torch.arange(5))  # painted_means needs all
    features = torch.randn(1, 6, *grid, generator=generator)
    seed = method_call("seed", features, segments)()
    ours = method_call("ours", features, segments)()
    assert seed.shape == (1, 6, *segments.shape[-2:]) and ours.shape == features.shape
    # each pixel painted with its segment's mean, the same means as ours ...
    membership = segment_membership(segments, STRIDE, grid)
    means = segment_means(features, membership)
    assert relative_difference(means, painted_means(seed, segments), features) <= TOLERANCE
    seed_pixels = seed[0].flatten(1).T  # (H*W, C)
    ours_pixels = means[0][segments.flatten()]
    assert relative_difference(ours_pixels, seed_pixels, features) <= TOLERANCE
    # ... and the seed's painting averaged over each patch is ours
    pooled = F.avg_pool2d(seed, STRIDE)
    assert relative_difference(ours, pooled, features) <= TOLERANCE


def test_the_check_sees_a_wrong_patch_mapping() -> None:
    """The tolerance is tight enough: bilinear upsampling (pixels blend their neighbours'
    patches) breaks the identity."""
    generator = torch.Generator().manual_seed(0)
    segments = voronoi_labels(3 * STRIDE, 4 * STRIDE, 5, generator)
    features = torch.randn(1, 6, 3, 4, generator=generator)
    ours = method_call("ours", features, segments)()
    blended = F.interpolate(features, size=tuple(segments.shape[-2:]), mode="bilinear")
    labels = segments.flatten()
    sums = torch.zeros(5, 6).index_add_(0, labels, blended[0].flatten(1).T)
    painted = (sums / torch.bincount(labels)[:, None])[labels].T.view(1, 6, *segments.shape[-2:])
    assert relative_difference(ours, F.avg_pool2d(painted, STRIDE), features) > 100 * TOLERANCE
