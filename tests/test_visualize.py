"""Pictures: heat maps leave the image visible where nobody looks; overlays show the fixation map
the metrics blur beside the prediction; scanpath pictures and utility plots explain themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from code.engine import visualize
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


def test_the_utility_plot_counts_whole_fixations_and_keeps_its_legend_off_the_bands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = []
    monkeypatch.setattr(visualize.plt, "close", figures.append)  # keep the figure to look at
    curves = {name: {"mean": [1.0, 0.8, 0.7], "se": [0.1, 0.1, 0.1]} for name in ("a", "b")}
    visualize.save_utility_plot(tmp_path / "utility.png", curves, "loss")
    (ax,) = figures[0].axes
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks == [1, 2, 3]  # no 1.5, 2.5: fixations are counted
    figures[0].canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 > ax.get_window_extent().x1  # beside the axes, not over the bands


def test_scanpath_pictures_keep_the_image_size_and_name_every_scanpath(tmp_path: Path) -> None:
    image = np.full((60, 80, 3), 128, dtype=np.uint8)
    paths = [np.array([[10.0, 10.0], [40.0, 30.0]]), np.array([[70.0, 50.0]])]
    visualize.save_scanpaths(tmp_path / "s.png", image, paths, ["NeVA", "a human"], "title")
    with Image.open(tmp_path / "s.png") as picture:
        assert picture.size == (80, 60)
    with pytest.raises(ValueError):  # a scanpath without a label
        visualize.save_scanpaths(tmp_path / "t.png", image, paths, ["NeVA"], "title")
