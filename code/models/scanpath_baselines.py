"""Scanpaths that need no task: the baselines task-driven scanpaths are compared with.

Positions are (x, y) in normalised [−1, 1] image coordinates (``code.models.layers.foveation``).
"""

from __future__ import annotations

import torch

from code.models.layers.foveation import from_pixels


def random_scanpaths(count: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(count, length, 2) positions drawn uniformly over the image."""
    return torch.rand(count, length, 2, generator=generator) * 2 - 1


def density_scanpaths(
    log_density: torch.Tensor, count: int, length: int, generator: torch.Generator
) -> torch.Tensor:
    """(count, length, 2) positions drawn independently from an (H, W) log-density (e.g. the
    centre bias), uniformly within the pixel drawn."""
    height, width = log_density.shape
    probabilities = log_density.double().exp().flatten().cpu()
    pixels = torch.multinomial(probabilities, count * length, replacement=True, generator=generator)
    rows, cols = pixels // width, pixels % width
    within = torch.rand(count * length, 2, generator=generator, dtype=torch.float64)
    points = torch.stack([cols, rows], dim=1) + within
    return from_pixels(points, height, width).float().view(count, length, 2)


def winner_take_all(log_density: torch.Tensor, length: int, ior_sigma: float) -> torch.Tensor:
    """(B, length, 2) fixations on (B, H, W) log-densities: each the most probable pixel's
    centre, after which inhibition of return multiplies the density by 1 − exp(−d² / 2σ²)
    around it (``ior_sigma`` σ in units where the shorter side spans 2, as the fovea's)."""
    if ior_sigma <= 0:
        raise ValueError(f"inhibition-of-return sigma must be positive, got {ior_sigma}")
    height, width = log_density.shape[-2:]
    shorter = min(height, width)
    rows = (torch.arange(height, dtype=torch.float64) + 0.5) * 2 / shorter
    cols = (torch.arange(width, dtype=torch.float64) + 0.5) * 2 / shorter
    saliency = log_density.double().cpu().exp()
    fixations = []
    for _ in range(length):
        best = saliency.flatten(1).argmax(dim=1)
        row, col = best // width, best % width
        dy = rows[None, :] - rows[row][:, None]
        dx = cols[None, :] - cols[col][:, None]
        squared = dy[:, :, None] ** 2 + dx[:, None, :] ** 2
        saliency = saliency * (1 - torch.exp(-squared / (2 * ior_sigma**2)))
        centre = torch.stack([col, row], dim=1).double() + 0.5
        fixations.append(from_pixels(centre, height, width))
    return torch.stack(fixations, dim=1).float()
