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


def toolbox_scanmatch(a, b, height, width, x_bins, y_bins, threshold, gap, temporal_bin):
    """The reference: the MATLAB ScanMatch toolbox's steps transcribed in their own form —
    float grid mask (ScanMatch_GridMask), substitution loops (ScanMatch_CreateSubMatrix),
    column-by-column Needleman–Wunsch with its if-statements (ScanMatch_nwAlgo), score of the
    last cell over max(substitution) × the longer length. Labels are 1-based as in MATLAB."""
    col_bin = np.floor(1 + np.arange(width) * (x_bins / width)).astype(int)
    row_bin = np.floor(1 + np.arange(height) * (y_bins / height)).astype(int)
    mask = (row_bin[:, None] - 1) * x_bins + col_bin[None, :]

    def sequence(xs, ys, durations):
        labels = mask[np.floor(ys).astype(int), np.floor(xs).astype(int)]
        if temporal_bin == 0:
            return labels
        # MATLAB's round(duration / bin): halves away from zero
        return np.repeat(labels, [math.floor(d / temporal_bin + 0.5) for d in durations])

    distance = np.zeros((x_bins * y_bins, x_bins * y_bins))
    column = 0
    for i in range(y_bins):
        for j in range(x_bins):
            row = 0
            for ii in range(y_bins):
                for jj in range(x_bins):
                    distance[row, column] = math.sqrt((j - jj) ** 2 + (i - ii) ** 2)
                    row += 1
            column += 1
    substitution = np.abs(distance - distance.max()) - (distance.max() - threshold)
    seq1, seq2 = sequence(*a), sequence(*b)
    m, n = len(seq1), len(seq2)
    f = np.zeros((n + 1, m + 1))
    f[1:, 0] = gap * np.arange(1, n + 1)
    f[0, 1:] = gap * np.arange(1, m + 1)
    for outer in range(1, m + 1):
        scored = substitution[seq2 - 1, seq1[outer - 1] - 1]
        best = f[0, outer]
        for inner in range(1, n + 1):
            up = best + gap
            left = f[inner, outer - 1] + gap
            diagonal = f[inner - 1, outer - 1] + scored[inner - 1]
            best = up if up > left else left
            if diagonal >= best:
                best = diagonal
            f[inner, outer] = best
    return f[n, m] / (substitution.max() * max(m, n))


def osie_scanpaths(osie_csv, images, subjects):
    """(xs, ys, durations) of each subject's scanpath on each image, in fixation order."""
    paths = []
    for image in images:
        for subject in subjects:
            rows = np.flatnonzero((osie_csv.image == image) & (osie_csv.subject == subject))
            rows = rows[np.argsort(osie_csv.fix_index[rows])]
            paths.append((image, (osie_csv.x[rows], osie_csv.y[rows], osie_csv.duration_ms[rows])))
    return paths


@pytest.mark.parametrize(("gap", "temporal_bin"), [(0.0, 0.0), (-0.5, 50.0)])
def test_scanmatch_equals_the_toolbox_on_osie_scanpaths(osie_csv, gap, temporal_bin):
    params = ScanMatchParams(Grid(12, 8), threshold=3.5, gap=gap, temporal_bin_ms=temporal_bin)
    subjects = np.unique(osie_csv.subject)[:5]
    for image in range(3):
        height, width = osie_csv.sizes[image]
        paths = [p for _, p in osie_scanpaths(osie_csv, [image], subjects)]
        for i, a in enumerate(paths):
            for b in paths[i + 1 :]:
                expected = toolbox_scanmatch(a, b, height, width, 12, 8, 3.5, gap, temporal_bin)
                assert scanmatch(a, b, height, width, params) == pytest.approx(expected, rel=1e-12)


def test_multimatch_matches_package(osie_csv):
    import multimatch_gaze

    def record(path):
        r = np.recarray(
            (len(path[0]),), dtype=[("start_x", "f8"), ("start_y", "f8"), ("duration", "f8")]
        )
        r.start_x, r.start_y, r.duration = path[0], path[1], path[2] / 1000
        return r

    rng = np.random.default_rng(3)
    random_pairs = []
    for _ in range(5):
        n1, n2 = rng.integers(3, 9, size=2)
        a = (rng.uniform(0, W, n1), rng.uniform(0, H, n1), rng.uniform(100, 500, n1))
        b = (rng.uniform(0, W, n2), rng.uniform(0, H, n2), rng.uniform(100, 500, n2))
        random_pairs.append((a, b))
    osie = [p for _, p in osie_scanpaths(osie_csv, [0], np.unique(osie_csv.subject)[:4])]
    osie_pairs = [(a, b) for i, a in enumerate(osie) for b in osie[i + 1 :]]
    for a, b in random_pairs + osie_pairs:
        ours = multimatch(a, b, H, W)
        expected = np.ravel(multimatch_gaze.docomparison(record(a), record(b), screensize=[W, H]))
        assert list(ours.values()) == pytest.approx(list(expected), rel=1e-12)


def test_conditional_evaluator_uniform():
    ev = ConditionalScanpathEvaluator()
    logp = np.full((3, 6, 8), -math.log(48))
    ev.update(logp, np.array([1.0, 2.0, 7.5]), np.array([0.5, 3.0, 5.9]), logp[0])
    result = ev.compute()
    assert result["LL"] == pytest.approx(-math.log(48))
    assert result["IG"] == 0 and result["NSS"] == 0 and result["AUC"] == 0.5


def test_human_ceiling_cut_to_a_length_scores_each_viewers_first_fixations_against_the_others():
    """Viewer 0 looks at cells 0, 1, 2 of a 3 × 1 grid, viewer 1 at cells 0, 1. Whole scanpaths:
    one edit apart. Cut to 2 fixations, as a model of 2 fixations is scored: viewer 0's first two
    against viewer 1 match (0 edits), viewer 1's against viewer 0's whole scanpath are one edit
    apart, so the ceiling is 0.5."""
    from code.data.gaze import Fixations, GazeDataset, Scanpath, Stimulus
    from code.metrics.scanpath import human_pairs

    def scanpath(subject: int, cells: list[int]) -> Scanpath:
        xs, ys = np.array([100.0 * c + 50 for c in cells]), np.full(len(cells), 50.0)
        return Scanpath(0, subject, xs, ys, np.full(len(cells), np.nan), np.full(len(cells), 200.0))

    stimuli = [Stimulus("a.png", 100, 300, None)]
    dataset = GazeDataset("toy", stimuli, Fixations.from_scanpaths([scanpath(0, [0, 1, 2]),
                                                                    scanpath(1, [0, 1])]))  # fmt: skip
    params = ScanMatchParams(Grid(3, 1), 2.0, 0.0, 0.0)

    def edits(length: int | None) -> list[float]:
        return [row["string_edit_distance"] for row in human_pairs(dataset, params, {0}, length)[0]]

    assert edits(None) == [1.0]
    assert sorted(edits(2)) == [0.0, 1.0]
    assert sorted(edits(3)) == [1.0, 1.0]  # as long as the longest: each pair in both orders
