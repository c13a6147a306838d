"""Pictures: heat maps leave the image visible where nobody looks; overlays show the fixation map
the metrics blur beside the prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from code.engine.visualize import save_heatmap, save_overlay


def _peaked_log_density(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[:height, :width]
    log_density = -((xs - 10.0) ** 2 + (ys - 10.0) ** 2) / 8.0
    return log_density - np.logaddexp.reduce(log_density.ravel())


def test_heatmap_is_transparent_where_the_density_is_low(tmp_path: Path) -> None:
    image = np.full((60, 80, 3), 120, dtype=np.uint8)
    save_heatmap(tmp_path / "heat.png", image, _peaked_log_density(60, 80))
    heat = np.asarray(Image.open(tmp_path / "heat.png"))
    assert np.array_equal(heat[50, 70], image[50, 70])  # far from the peak: the image itself
    assert np.abs(heat[10, 10].astype(int) - 120).max() > 40  # at the peak: the colour map


def test_overlay_adds_the_fixation_map_panel(tmp_path: Path) -> None:
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    fixations = np.array([[10.0, 10.0], [40.0, 30.0]])
    log_density = _peaked_log_density(60, 80)
    save_overlay(tmp_path / "two.png", image, log_density, fixations, "a.jpg")
    save_overlay(tmp_path / "four.png", image, log_density, fixations, "a.jpg: IG 1.00", 5.0,
                 log_density)  # fmt: skip
    widths = [Image.open(tmp_path / name).size[0] for name in ("two.png", "four.png")]
    assert widths[1] > 1.8 * widths[0]  # image, fixation map, prediction, truth vs two panels
