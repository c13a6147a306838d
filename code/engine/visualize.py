"""Pictures of predictions, drawn as their kind shows them: a density over the image with the
fixations, a reconstruction beside its input and target, heat maps and scanpaths."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from code.data.batch import Batch
from code.metrics.saliency import empirical_saliency_map
from code.models.shapes import PredictionKind

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DENSITY_CMAP = "magma"  # perceptually uniform, dark where nobody looks
HEATMAP_OPACITY = 0.8  # at the density's maximum; it falls to 0 with the density
# zlib's run-length strategy for heat-map PNGs: on 1024x768 overlays (benchmarks/predict.py)
# about as small as Pillow's default (level 6, which searches for repeats) and ~6x faster to
# encode, which was the largest part of code.predict's time.
HEATMAP_PNG = {"compress_type": zlib.Z_RLE}
COLOUR_BAR_GREY = 128  # the colour bar shows the heat map's colours over a neutral grey


def pyplot() -> ModuleType:
    """matplotlib's pyplot with the file-only Agg backend. Imported on first use, not with this
    module: it would add ~0.6 s to the start-up of every command that imports a task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def save_overlay(
    path: Path,
    image: np.ndarray,
    log_density: np.ndarray,
    fixations_xy: np.ndarray,
    title: str,
    fixation_map_sigma: float | None = None,
    true_log_density: np.ndarray | None = None,
) -> None:
    """One figure: the image with its fixations; the empirical fixation map (fixations blurred
    with ``fixation_map_sigma`` px, as CC/KLDiv/SIM see them) when given; the predicted density
    with a colour bar; the true density when known. ``title`` heads the figure (e.g. the
    image's id and scores)."""
    panels = {"image + fixations": None}
    if fixation_map_sigma is not None and len(fixations_xy):
        height, width = log_density.shape
        xs, ys = fixations_xy[:, 0], fixations_xy[:, 1]
        empirical = empirical_saliency_map(xs, ys, height, width, fixation_map_sigma, "cpu")
        panels[f"fixation map (σ = {fixation_map_sigma:g} px)"] = empirical.numpy()
    panels["predicted density"] = np.exp(log_density)
    if true_log_density is not None:
        panels["true density"] = np.exp(true_log_density)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (name, values) in zip(axes[0], panels.items(), strict=True):
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        if values is None:
            ax.imshow(image)
            ax.scatter(fixations_xy[:, 0], fixations_xy[:, 1], s=8, c="red",
                       edgecolors="white", linewidths=0.5)  # fmt: skip
            continue
        shown = ax.imshow(values, cmap=DENSITY_CMAP)
        fig.colorbar(shown, ax=ax, fraction=0.035, pad=0.02, format="%.1e")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_panels(path: Path, images: dict[str, np.ndarray], title: str) -> None:
    """Images side by side, each under its name (e.g. input, reconstruction, target)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(images), figsize=(4 * len(images), 3.4), squeeze=False)
    for ax, (name, image) in zip(axes[0], images.items(), strict=True):
        ax.imshow(np.clip(image, 0, 1))
        ax.set_title(f"{title}: {name}" if ax is axes[0][0] else name)
    _save(fig, axes[0], path)


def save_heatmap(path: Path, image: np.ndarray, log_density: np.ndarray) -> None:
    """The image with the density (scaled to its maximum) over it in a perceptual colour map,
    opaque where the density is high and transparent where it is low (the image shows there);
    to its right, a colour bar from 0 to the maximum drawn the same way over grey."""
    density = np.exp(log_density - log_density.max(), dtype=np.float32)
    picture = np.concatenate([_heat(image, density), _colour_bar(image.shape[0])], axis=1)
    Image.fromarray(picture).save(path, **HEATMAP_PNG)


def _heat(background: np.ndarray, density: np.ndarray) -> np.ndarray:
    """``density`` (0..1) coloured and blended over ``background`` (uint8 RGB), as uint8."""
    import matplotlib  # here: see pyplot()

    # The colour map's table indexed as the colour map does it (floor(x * N), 1 in the last
    # entry), in float32: half the time of calling it on a million float64 pixels.
    colours = matplotlib.colormaps[DENSITY_CMAP]
    table = colours(np.arange(colours.N))[:, :3].astype(np.float32) * 255
    heat = table[np.minimum((density * colours.N).astype(np.intp), colours.N - 1)]
    alpha = (HEATMAP_OPACITY * np.sqrt(density))[..., None]
    return np.rint(background + alpha * (heat - background)).astype(np.uint8)


def _colour_bar(height: int) -> np.ndarray:
    """A white panel ``height`` pixels high with the heat map's scale: a strip from the maximum
    (top) to 0 (bottom) and its labels."""
    font = ImageFont.load_default(size=int(np.clip(height // 32, 8, 24)))
    labels = ("max", "max/2", "0")
    text_width = max(int(np.ceil(font.getlength(label))) for label in labels)
    margin = max(3, height // 60)
    strip_width = max(6, height // 40)
    top, bottom = margin + font.size // 2, height - margin - font.size // 2
    panel = Image.new("RGB", (3 * margin + strip_width + text_width, height), "white")
    levels = np.linspace(1, 0, max(bottom - top, 1), dtype=np.float32)
    grey = np.full((len(levels), strip_width, 3), COLOUR_BAR_GREY, np.uint8)
    strip = _heat(grey, np.repeat(levels[:, None], strip_width, axis=1))
    panel.paste(Image.fromarray(strip), (margin, top))
    draw = ImageDraw.Draw(panel)
    for label, y in zip(labels, (top, (top + bottom) / 2, bottom), strict=True):
        draw.text((2 * margin + strip_width, y), label, fill="black", font=font, anchor="lm")
    return np.asarray(panel)


def save_scanpaths(
    path: Path, image: np.ndarray, scanpaths: Sequence[np.ndarray], labels: Sequence[str],
    title: str,
) -> None:  # fmt: skip
    """Scanpaths ((L, 2) arrays of x, y) as numbered fixations joined by lines, one colour per
    scanpath, named in a legend (``labels``), with ``title`` in the bottom-left corner; the
    picture has the image's size."""
    plt = pyplot()
    height, width = image.shape[:2]
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image)
    for k, (path_xy, label) in enumerate(zip(scanpaths, labels, strict=True)):
        colour = plt.get_cmap("tab10")(k % 10)
        ax.plot(path_xy[:, 0], path_xy[:, 1], "-o", color=colour, lw=1.5, ms=5, alpha=0.85,
                label=label)  # fmt: skip
        for i, (x, y) in enumerate(path_xy):
            ax.annotate(str(i + 1), (x, y), color="white", fontsize=7, ha="center", va="center")
    ax.legend(loc="upper right", fontsize=6, framealpha=0.7)
    ax.text(0.01, 0.01, title, transform=ax.transAxes, fontsize=7, va="bottom",
            bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0})  # fmt: skip
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_utility_plot(path: Path, curves: dict[str, dict[str, list[float]]], title: str) -> None:
    """A loss after each fixation, one line (mean ± s.e. band) per scanpath generator."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, curve in curves.items():
        mean, error = np.asarray(curve["mean"]), np.nan_to_num(np.asarray(curve["se"]))
        steps = np.arange(1, len(mean) + 1)
        ax.plot(steps, mean, "-o", ms=3, label=name)
        ax.fill_between(steps, mean - error, mean + error, alpha=0.2)
    ax.set_xlabel("fixations")
    ax.set_ylabel("downstream loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a count of fixations
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside the bands
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _save(fig: Figure, axes: np.ndarray, path: Path) -> None:
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def hwc(image: torch.Tensor) -> np.ndarray:
    """A (3, H, W) tensor as an (H, W, 3) float array, as matplotlib shows it."""
    return image.permute(1, 2, 0).float().cpu().numpy()


def _draw_density(path: Path, batch: Batch, density: torch.Tensor, item: int, title: str) -> None:
    fixations = batch.fixations[item][batch.fixation_mask[item]].cpu().numpy()
    image = hwc(batch.input[item])
    save_overlay(path, image, density.float().cpu().numpy(), fixations, title)


def _draw_image(path: Path, batch: Batch, prediction: torch.Tensor, item: int, title: str) -> None:
    panels = {"input": hwc(batch.input[item]), "prediction": hwc(prediction[item])}
    if batch.loss_mask is not None:  # where the input was masked
        panels = {"mask": hwc(batch.loss_mask[item].expand(3, -1, -1)), **panels}
    if batch.target is not None:
        panels["target"] = hwc(batch.target[item])
    save_panels(path, panels, title)


# How each kind of prediction is drawn: DRAWERS[kind](path, batch, prediction, item, title).
Drawer = Callable[[Path, Batch, torch.Tensor, int, str], None]
DRAWERS: dict[PredictionKind, Drawer] = {
    PredictionKind.LOG_DENSITY: lambda path, batch, p, item, title: _draw_density(
        path, batch, p[item], item, title
    ),
    # a conditional density: the one of each item's first fixation given its history
    PredictionKind.CONDITIONAL_LOG_DENSITY: lambda path, batch, p, item, title: _draw_density(
        path, batch, p[item, 0], item, title
    ),
    PredictionKind.IMAGE: _draw_image,
}
