"""Pictures of predictions: image, predicted density, true density (if known), fixations."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def save_overlay(
    path: Path,
    image: np.ndarray,
    log_density: np.ndarray,
    fixations_xy: np.ndarray,
    true_log_density: np.ndarray | None,
    title: str,
) -> None:
    """One figure: the image with fixations, the predicted density over it, the true density."""
    panels = 3 if true_log_density is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.4))
    axes[0].imshow(image)
    axes[0].scatter(
        fixations_xy[:, 0], fixations_xy[:, 1], s=8, c="red", edgecolors="white", linewidths=0.5
    )
    axes[0].set_title(f"{title}: image + fixations")
    axes[1].imshow(image)
    axes[1].imshow(np.exp(log_density), cmap="inferno", alpha=0.65)
    axes[1].set_title("predicted density")
    if true_log_density is not None:
        axes[2].imshow(np.exp(true_log_density), cmap="inferno")
        axes[2].set_title("true density")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
