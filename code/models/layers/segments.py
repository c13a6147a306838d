"""Segments on a feature grid: membership, per-segment mean features, semantic painting.

A feature position (i, j) at stride s covers the image pixels [s*i, s*i+s) x [s*j, s*j+s); its
membership in segment k is the fraction of those pixels labelled k (pixels beyond the image, in
an encoder's padding, belong to no segment). Everything below works on these fractions, so maps
of any stride, padded or not, are handled alike.
"""

from __future__ import annotations

import torch

EPS = 1e-6


def segment_membership(segments: torch.Tensor, stride: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) labels 0..K-1 -> (B, K, h, w) fraction of each grid cell in each segment.

    K is the largest label in the batch + 1; segments an image lacks have zero membership.
    """
    batch, height, width = segments.shape
    h, w = grid
    num_segments = int(segments.max()) + 1
    rows = torch.arange(height, device=segments.device) // stride
    cols = torch.arange(width, device=segments.device) // stride
    cell = rows[:, None] * w + cols[None, :]  # (H, W) index of the grid cell of each pixel
    index = (segments * (h * w) + cell).flatten(1)
    counts = torch.zeros(batch, num_segments * h * w, device=segments.device)
    counts.scatter_add_(1, index, torch.ones_like(index, dtype=counts.dtype))
    return counts.view(batch, num_segments, h, w) / stride**2


def segment_means(features: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) features, (B, K, h, w) membership -> (B, K, C) membership-weighted means."""
    weights = membership.flatten(2)
    sums = torch.einsum("bkp,bcp->bkc", weights, features.flatten(2).to(weights.dtype))
    return sums / (weights.sum(2, keepdim=True) + EPS)


def segment_present(membership: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: which segments occur in each image."""
    return membership.flatten(2).sum(2) > 0


def paint(values: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """(B, K, C) per-segment values painted back onto the grid -> (B, C, h, w).

    A cell is painted with the membership-weighted average of its segments' values (a cell inside
    one segment gets exactly that segment's value; padding cells get zero).
    """
    painted = torch.einsum("bkc,bkhw->bchw", values, membership.to(values.dtype))
    return painted / (membership.sum(1, keepdim=True).to(values.dtype) + EPS)


def semantic_painting(features: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """Every position painted with the mean feature of its segment (at feature resolution)."""
    return paint(segment_means(features, membership), membership)
