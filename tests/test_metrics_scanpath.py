import math

import numpy as np
import pytest

from code.metrics.scanpath import (
    ConditionalScanpathEvaluator,
    Grid,
    ScanMatchParams,
    multimatch,
    needleman_wunsch,
    scanmatch,
    sequence_score,
    string_edit_distance,
)

H, W = 600, 800


def test_string_edit_distance():
    a, b = np.array([0, 1, 2, 3]), np.array([0, 2, 3, 3, 4])
    assert string_edit_distance(a, a) == 0
    assert string_edit_distance(a, b) == 3  # delete 1, insert 3, insert 4
    assert sequence_score(a, a) == 1.0
    assert sequence_score(np.array([0, 0]), np.array([1, 1])) == 0.0


def test_needleman_wunsch_against_full_table():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.normal(size=(rng.integers(1, 7), rng.integers(1, 7)))
        gap = float(rng.uniform(-1, 0.3))
        table = np.zeros((s.shape[0] + 1, s.shape[1] + 1))
        table[:, 0] = gap * np.arange(s.shape[0] + 1)
        table[0, :] = gap * np.arange(s.shape[1] + 1)
        for i in range(1, s.shape[0] + 1):
            for j in range(1, s.shape[1] + 1):
                table[i, j] = max(
                    table[i - 1, j - 1] + s[i - 1, j - 1],
                    table[i - 1, j] + gap,
                    table[i, j - 1] + gap,
                )
        assert needleman_wunsch(
            np.arange(s.shape[0]), np.arange(s.shape[1]), s, gap
        ) == pytest.approx(table[-1, -1])


def test_scanmatch_hand_derived():
    params = ScanMatchParams(Grid(4, 3), threshold=2.0, gap=0.0, temporal_bin_ms=0)
    path = (np.array([50.0, 450, 750]), np.array([50.0, 300, 550]), np.array([200.0, 200, 200]))
    assert scanmatch(path, path, H, W, params) == pytest.approx(1.0)
    a = (np.array([50.0, 250]), np.array([50.0, 50]), np.array([100.0, 100]))
    b = (np.array([250.0, 450]), np.array([50.0, 50]), np.array([100.0, 100]))
    # cells a = (0, 1), b = (1, 2): align a0-b0 (d=1 → 1), a1-b1 (d=1 → 1) = 2, or a1-b0 (d=0 → 2)
    # with gaps free (gap 0): best = 2; normalised by 2 × 2
    assert scanmatch(a, b, H, W, params) == pytest.approx(0.5)
    # temporal binning: 250 ms / 100 ms bins → 3 copies (round half up), 140 → 1
    binned = ScanMatchParams(Grid(4, 3), threshold=2.0, gap=0.0, temporal_bin_ms=100)
    c = (np.array([50.0]), np.array([50.0]), np.array([250.0]))
    d = (np.array([50.0]), np.array([50.0]), np.array([140.0]))
    assert scanmatch(c, d, H, W, binned) == pytest.approx(1 * 2 / (2 * 3))


@pytest.mark.parametrize(
    ("height", "width", "x_bins", "y_bins"), [(600, 800, 12, 8), (768, 1024, 5, 3)]
)
def test_grid_is_the_toolbox_grid_mask(height, width, x_bins, y_bins):
    """Every pixel's cell equals ScanMatch_GridMask's label: nearest-neighbour lookup of the
    bins at floor(1 + k·bins/size) for 1-based pixel k + 1 (transcribed here in floats)."""
    col_bin = np.floor(1 + np.arange(width) * (x_bins / width)).astype(int) - 1
    row_bin = np.floor(1 + np.arange(height) * (y_bins / height)).astype(int) - 1
    mask = row_bin[:, None] * x_bins + col_bin[None, :]
    rows, cols = np.mgrid[:height, :width]
    # any position inside a pixel gets the pixel's label
    offset = np.random.default_rng(0).uniform(0, 1, size=(2, height, width))
    cells = Grid(x_bins, y_bins).cells(
        (cols + offset[0]).ravel(), (rows + offset[1]).ravel(), height, width
    )
    np.testing.assert_array_equal(cells.reshape(height, width), mask)


def test_multimatch_matches_package():
    import multimatch_gaze

    rng = np.random.default_rng(3)
    for _ in range(5):
        n1, n2 = rng.integers(3, 9, size=2)
        a = (rng.uniform(0, W, n1), rng.uniform(0, H, n1), rng.uniform(100, 500, n1))
        b = (rng.uniform(0, W, n2), rng.uniform(0, H, n2), rng.uniform(100, 500, n2))
        ours = multimatch(a, b, H, W)

        def rec(p):
            r = np.recarray(
                (len(p[0]),), dtype=[("start_x", "f8"), ("start_y", "f8"), ("duration", "f8")]
            )
            r.start_x, r.start_y, r.duration = p[0], p[1], p[2] / 1000
            return r

        expected = np.ravel(multimatch_gaze.docomparison(rec(a), rec(b), screensize=[W, H]))
        assert list(ours.values()) == pytest.approx(list(expected), rel=1e-12)


def test_conditional_evaluator_uniform():
    ev = ConditionalScanpathEvaluator()
    logp = np.full((3, 6, 8), -math.log(48))
    ev.update(logp, np.array([1.0, 2.0, 7.5]), np.array([0.5, 3.0, 5.9]), logp[0])
    result = ev.compute()
    assert result["LL"] == pytest.approx(-math.log(48))
    assert result["IG"] == 0 and result["NSS"] == 0 and result["AUC"] == 0.5
