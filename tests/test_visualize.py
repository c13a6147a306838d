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


def test_heatmap_has_a_colour_bar_from_zero_to_the_maximum_beside_the_image(
    tmp_path: Path,
) -> None:
    image = np.full((120, 80, 3), 120, dtype=np.uint8)
    log_density = _peaked_log_density(120, 80)
    save_heatmap(tmp_path / "heat.png", image, log_density)
    heat = np.asarray(Image.open(tmp_path / "heat.png")).astype(int)
    assert heat.shape[0] == 120 and heat.shape[1] > 80  # the bar is beside, not over, the image
    bar = heat[:, 80:]
    coloured = np.flatnonzero(np.abs(bar - 255).max(axis=2).max(axis=0) > 0)
    strip = bar[:, coloured[0] : coloured[0] + 3].mean(axis=1)  # the strip's first columns
    rows = np.flatnonzero(np.abs(strip - 255).max(axis=1) > 0)
    top, bottom = strip[rows[0]], strip[rows[-1]]
    assert np.array_equal(bottom, [visualize.COLOUR_BAR_GREY] * 3)  # 0: the grey shows through
    # the maximum: the colour the image's brightest pixel has, the peak of the density
    peak = np.unravel_index(np.argmax(log_density), log_density.shape)
    assert np.abs(top - heat[peak]).max() <= 20
    assert np.abs(top - bottom).max() > 60


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
    monkeypatch.setattr(visualize.pyplot(), "close", figures.append)  # keep the figure to look at
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
