import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from code.config import load_config
from code.data.batch import Batch
from code.data.gaze import Fixations, GazeDataset, Scanpath, Stimulus
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
from code.models.shapes import PredictionKind

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
        assert list(ours) == pytest.approx(list(expected), rel=1e-12)


def test_conditional_evaluator_uniform():
    ev = ConditionalScanpathEvaluator()
    logp = np.full((3, 6, 8), -math.log(48))
    ev.update(logp, np.array([1.0, 2.0, 7.5]), np.array([0.5, 3.0, 5.9]), logp[0])
    result = ev.compute()
    assert result["LL"] == pytest.approx(-math.log(48))
    assert result["IG"] == 0 and result["NSS"] == 0 and result["AUC"] == 0.5


# --------------------------------------------------------------------------- conditional scores
# A scanpath model whose density depends on the history, scored by pysaliency 0.2.22's own
# conditional definitions (ScanpathModel.log_likelihood / information_gain over FixationTrains,
# ScanpathSaliencyMapModel.NSS / AUC with every pixel a negative): the reference every
# conditional score of the framework must reproduce.

RECENCY_WEIGHTS = (0.5, 0.25, 0.1)  # mass around the most recent, 2nd and 3rd most recent fixation


def gaussian_density(cx: float, cy: float, sigma: float, height: int, width: int) -> np.ndarray:
    """An isotropic Gaussian about (cx, cy) read at the pixel centres, normalised over the grid."""
    gx = np.exp(-0.5 * ((np.arange(width) + 0.5 - cx) / sigma) ** 2)
    gy = np.exp(-0.5 * ((np.arange(height) + 0.5 - cy) / sigma) ** 2)
    return np.outer(gy / gy.sum(), gx / gx.sum())


def history_log_density(
    recent_xs: np.ndarray, recent_ys: np.ndarray, height: int, width: int, sigma: float
) -> np.ndarray:
    """The test's scanpath model: log p(next fixation | history), ``recent_*`` most recent first.

    Gaussians of σ px about the most recent fixations, weighted ``RECENCY_WEIGHTS`` (a longer
    history than three is ignored); the rest of the mass on a broad Gaussian about the image
    centre (all of it for an empty history). Scores of this model depend on which fixations
    form the history and in which order."""
    weights = RECENCY_WEIGHTS[: len(recent_xs)]
    density = (1 - sum(weights)) * gaussian_density(
        width / 2, height / 2, max(height, width) / 3, height, width
    )
    for weight, x, y in zip(weights, recent_xs, recent_ys, strict=False):
        density += weight * gaussian_density(x, y, sigma, height, width)
    return np.log(density)


def pysaliency_conditional_scores(
    stimuli, fixations, sigma: float, memory: int, baseline
) -> dict[str, float]:
    """LL, IG (over ``baseline``), NSS and AUC of :func:`history_log_density` (the last
    ``memory`` fixations of pysaliency's history) by pysaliency, per fixation."""
    import pysaliency

    class HistoryModel(pysaliency.ScanpathModel):
        def conditional_log_density(self, stimulus, x_hist, y_hist, t_hist, attributes=None,
                                    out=None) -> np.ndarray:  # fmt: skip
            height, width = stimulus.size
            recent_xs, recent_ys = x_hist[::-1][:memory], y_hist[::-1][:memory]
            return history_log_density(recent_xs, recent_ys, height, width, sigma)

    class HistoryDensityMaps(pysaliency.ScanpathSaliencyMapModel):
        """The model's conditional densities as saliency maps (NSS, AUC of the density)."""

        def conditional_saliency_map(self, stimulus, x_hist, y_hist, t_hist, attributes=None,
                                     out=None) -> np.ndarray:  # fmt: skip
            return np.exp(model.conditional_log_density(stimulus, x_hist, y_hist, t_hist))

    model = HistoryModel()
    maps = HistoryDensityMaps()
    return {
        "LL": model.log_likelihood(stimuli, fixations),
        "IG": model.information_gain(stimuli, fixations, baseline),
        "NSS": maps.NSS(stimuli, fixations),
        "AUC": maps.AUC(stimuli, fixations, nonfixations="uniform"),
    }


def distinct_stimuli(sizes: list[tuple[int, int]]):
    """pysaliency stimuli of these sizes, each with its own content (so its own id)."""
    import pysaliency

    images = []
    for i, (h, w) in enumerate(sizes):
        a = np.zeros((h, w), dtype=np.uint8)
        a.flat[:4] = np.frombuffer(np.int32(i).tobytes(), dtype=np.uint8)
        images.append(a)
    return pysaliency.Stimuli(images)


def test_conditional_evaluator_equals_pysaliency_on_osie_scanpaths(osie_csv):
    """Real OSIE scanpaths (3 images × 4 viewers, every fixation, the first with an empty
    history; coordinates ÷ 4, on 150 × 200 maps, to keep the test fast), each fixation's density
    given the ones before it, IG over pysaliency's own Gaussian centre bias; fed to the
    evaluator one scanpath per ``update`` (scanpaths of different lengths). Checked to fail
    with: IG in nats (no ÷ ln 2), IG without the baseline subtracted, x and y swapped, NSS of
    the log-density instead of the density, AUC with the fixated pixel left out of the
    negatives (pysaliency's "unfixated"), and means per ``update`` call (per scanpath) instead
    of per fixation."""
    import pysaliency

    sigma, memory, shrink = 15.0, len(RECENCY_WEIGHTS), 4
    subjects = np.unique(osie_csv.subject)[:4]
    paths = [
        (image, (xs / shrink, ys / shrink))
        for image, (xs, ys, _) in osie_scanpaths(osie_csv, [0, 1, 2], subjects)
        if len(xs)
    ]
    sizes = [(int(h) // shrink, int(w) // shrink) for h, w in osie_csv.sizes[:3]]
    stimuli = distinct_stimuli(sizes)
    fixations = pysaliency.FixationTrains.from_fixation_trains(
        [xs for _, (xs, _) in paths],
        [ys for _, (_, ys) in paths],
        [np.arange(len(xs), dtype=float) for _, (xs, _) in paths],
        [image for image, _ in paths],
        list(range(len(paths))),
    )
    baseline = pysaliency.models.GaussianModel(width=0.4, caching=False)
    expected = pysaliency_conditional_scores(stimuli, fixations, sigma, memory, baseline)
    assert expected["IG"] > 0.3 and expected["AUC"] > 0.75  # far from chance

    ev = ConditionalScanpathEvaluator()
    for image, (xs, ys) in paths:
        height, width = sizes[image]
        logps = np.stack(
            [
                history_log_density(
                    xs[:k][::-1][:memory], ys[:k][::-1][:memory], height, width, sigma
                )
                for k in range(len(xs))
            ]
        )
        ev.update(logps, xs, ys, baseline.log_density(stimuli.stimulus_objects[image]))
    result = ev.compute()
    assert ev.state()[0, 1] == len(fixations.x)
    for metric, value in expected.items():
        assert result[metric] == pytest.approx(value, rel=1e-9), metric


class HistoryGaussians(torch.nn.Module):
    """:func:`history_log_density` as a framework scanpath model: each fixation's density from
    the history its batch holds (most recent first, masked), where the DeepGaze III head reads
    it."""

    prediction = PredictionKind.CONDITIONAL_LOG_DENSITY

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, batch: Batch) -> tuple[torch.Tensor, None]:
        height, width = batch.input.shape[-2:]
        items, targets = batch.history_mask.shape[:2]
        out = torch.empty(items, targets, height, width, dtype=torch.float64)
        for i in range(items):
            for k in range(targets):
                recent = batch.history[i, k][batch.history_mask[i, k]].double().numpy()
                out[i, k] = torch.from_numpy(
                    history_log_density(recent[:, 0], recent[:, 1], height, width, self.sigma)
                )
        return out, None


def random_walks(
    rng: np.random.Generator, lengths: dict[int, list[int]], height: int, width: int, step: float
) -> list[Scanpath]:
    """Scanpaths of the given lengths per image (viewers 3, 0, 2, 1, ...): each fixation a
    Gaussian step from the last, kept in the image, on quarter pixels (exact in float32)."""
    subjects = [3, 0, 2, 1, 4]
    scanpaths = []
    for image, image_lengths in lengths.items():
        for subject, length in zip(subjects, image_lengths, strict=False):
            xy = [rng.uniform([width / 4, height / 4], [3 * width / 4, 3 * height / 4])]
            for _ in range(length - 1):
                xy.append(xy[-1] + rng.normal(0, step, 2))
            xy = np.clip(np.floor(np.array(xy) * 4) / 4, 0, [width - 0.25, height - 0.25])
            times = np.full(length, np.nan)
            scanpaths.append(Scanpath(image, subject, xy[:, 0], xy[:, 1], times, times))
    return scanpaths


def test_scanpath_model_scores_equal_pysaliency_given_each_fixations_history(tmp_path: Path):
    """The scanpath model's row of the README, end to end: ``evaluate_scanpath_model`` on the
    items of the README's scanpath config (HISTORY_LENGTH 3, INCLUDE_FIRST false), with a model
    whose density follows the last three fixations, against pysaliency's conditional scores
    of the same model on ``FixationTrains`` without each scanpath's first fixation; IG over the
    same cross-validated centre bias. Random-walk scanpaths of 1 to 8 fixations on three 24 × 32
    images, the fixation table's rows shuffled. Also the two baseline rows and the fixation
    count. Checked to fail with: the history holding the target itself, the history shifted one
    further back, the history oldest first, the first fixation scored, a scored fixation read
    from the row before its own, x and y swapped when scoring, IG over the uniform model
    instead of the centre bias, IG in nats, and means per scanpath instead of per fixation."""
    import pysaliency

    from code.data.build import build_loader, build_samples
    from code.data.centerbias import CenterBias
    from code.engine.model_scoring import evaluate_scanpath_model
    from code.metrics.baselines import CrossValidatedCenterBias

    height, width, sigma = 24, 32, 2.0
    cfg = load_config(
        Path("configs/01_dinogaze_spade/cpu_osie/scanpath.yaml"),
        ["DATA.IMAGE_SIZE", f"[{height}, {width}]", "DATA.CACHE.DIR", "null",
         "DATA.NUM_WORKERS", "0", "DATA.BATCH_SIZE", "3", "EVAL.CENTERBIAS_FOLDS", "3",
         "EVAL.SCANPATH_IMAGES", "null"],
    )  # fmt: skip
    items = cfg.DATA.SAMPLES.SCANPATH
    assert (items.HISTORY_LENGTH, items.INCLUDE_FIRST) == (3, False)  # what the README row says

    arrays, stimuli = [], []
    for i in range(3):
        path = tmp_path / f"walk{i}.png"
        Image.fromarray(np.full((height, width, 3), 50 * i + 20, np.uint8)).save(path)
        arrays.append(np.asarray(Image.open(path)))
        stimuli.append(Stimulus(path.name, height, width, path))
    rng = np.random.default_rng(1)
    scanpaths = random_walks(rng, {0: [6, 1, 4, 2], 1: [5, 3], 2: [8, 2, 2]}, height, width, 3.0)
    fixations = Fixations.from_scanpaths(scanpaths)
    dataset = GazeDataset("walks", stimuli, fixations.select(rng.permutation(len(fixations))))

    samples_centerbias = CenterBias(cfg.DATA.CENTERBIAS.BANDWIDTH,
                                    cfg.DATA.CENTERBIAS.UNIFORM_WEIGHT).fit(dataset)  # fmt: skip
    samples = build_samples(cfg, dataset, "test", samples_centerbias, None, transformed=False)
    report = evaluate_scanpath_model(
        cfg, HistoryGaussians(sigma), dataset, build_loader(cfg, samples, train=False), "cpu"
    )

    centerbias = CrossValidatedCenterBias(
        cfg.DATA.CENTERBIAS.BANDWIDTH, cfg.DATA.CENTERBIAS.UNIFORM_WEIGHT, 3
    ).fit(dataset)
    reference_stimuli = pysaliency.Stimuli(arrays)
    by_content = {
        pysaliency.datasets.get_image_hash(a): centerbias.log_density(i, height, width)
        for i, a in enumerate(arrays)
    }

    class CentreBias(pysaliency.Model):
        def _log_density(self, stimulus: np.ndarray) -> np.ndarray:
            return by_content[pysaliency.datasets.get_image_hash(stimulus)]

    trains = pysaliency.FixationTrains.from_fixation_trains(
        [s.x for s in scanpaths],
        [s.y for s in scanpaths],
        [np.arange(len(s.x), dtype=float) for s in scanpaths],
        [s.image for s in scanpaths],
        [s.subject for s in scanpaths],
    )
    scored = trains[trains.lengths > 0]  # INCLUDE_FIRST false: from each second fixation on
    baseline = CentreBias(caching=False)
    expected = pysaliency_conditional_scores(reference_stimuli, scored, sigma, 3, baseline)
    assert expected["IG"] > 1.0 and expected["AUC"] > 0.85  # far from chance

    assert report["n_fixations"] == len(scored.x) == 33 - 9
    for metric, value in expected.items():
        assert report["metrics"][metric] == pytest.approx(value, rel=1e-9), metric
    centre_row, uniform_row = report["baselines"]["center_bias"], report["baselines"]["uniform"]
    assert centre_row["LL"] == pytest.approx(baseline.log_likelihood(reference_stimuli, scored))
    assert centre_row["IG"] == 0
    uniform = pysaliency.UniformModel()
    assert uniform_row["IG"] == pytest.approx(
        uniform.information_gain(reference_stimuli, scored, baseline), rel=1e-9
    )


def test_scanpaths_by_image_keeps_every_fixation_in_fixation_order():
    """Four scanpaths on three images written out by hand: two viewers of image 0 (one with
    a single fixation), viewer 3 on images 0 and 1, fixation indices with gaps; the table's
    rows shuffled. Every scanpath, first fixation included, comes back under its image and
    viewer, ordered by fixation index, durations beside their fixations. Checked to fail
    with: rows in table order (no sort), rows sorted by scanpath only (not by index), the first
    fixation dropped, scanpaths keyed by scanpath id instead of viewer, and x and y swapped."""
    from code.metrics.scanpath import scanpaths_by_image

    #         image, subject, train, [(index, x, y, duration), ...] in temporal order
    written = [
        (0, 3, 0, [(0, 10.0, 20.0, 100.0), (1, 30.0, 5.0, 110.0), (2, 50.5, 40.0, 120.0)]),
        (0, 7, 1, [(0, 99.0, 1.0, 300.0)]),
        (1, 3, 2, [(0, 1.0, 2.0, 210.0), (4, 3.0, 4.0, 220.0), (9, 5.0, 6.0, 230.0)]),
        (2, 0, 3, [(1, 8.0, 9.0, 400.0), (2, 7.0, 6.0, 410.0)]),
    ]
    columns = [
        (image, subject, train, *fixation)
        for image, subject, train, fixations in written
        for fixation in fixations
    ]
    image, subject, train, index, x, y, duration = (np.array(c) for c in zip(*columns, strict=True))
    nan = np.full(len(x), np.nan)
    table = Fixations(x, y, image, subject, train, index, nan, duration)
    stimuli = [Stimulus(f"{i}.png", 100, 120, None) for i in range(3)]
    order = np.random.default_rng(0).permutation(len(x))
    dataset = GazeDataset("written", stimuli, table.select(order))

    result = scanpaths_by_image(dataset)
    assert {i: sorted(by_subject) for i, by_subject in result.items()} == {
        0: [3, 7],
        1: [3],
        2: [0],
    }
    for image, subject, _, fixations in written:
        _, xs, ys, durations = (list(c) for c in zip(*fixations, strict=True))
        got = result[image][subject]
        assert [list(c) for c in got] == [xs, ys, durations], (image, subject)


def test_human_ceiling_cut_to_a_length_scores_each_viewers_first_fixations_against_the_others():
    """Viewer 0 looks at cells 0, 1, 2 of a 3 × 1 grid, viewer 1 at cells 0, 1. Whole scanpaths:
    one edit apart. Cut to 2 fixations, as a model of 2 fixations is scored: viewer 0's first two
    against viewer 1 match (0 edits), viewer 1's against viewer 0's whole scanpath are one edit
    apart, so the ceiling is 0.5."""
    from code.metrics.scanpath import human_pairs

    def scanpath(subject: int, cells: list[int]) -> Scanpath:
        xs, ys = np.array([100.0 * c + 50 for c in cells]), np.full(len(cells), 50.0)
        return Scanpath(0, subject, xs, ys, np.full(len(cells), np.nan), np.full(len(cells), 200.0))

    stimuli = [Stimulus("a.png", 100, 300, None)]
    fixations = Fixations.from_scanpaths([scanpath(0, [0, 1, 2]), scanpath(1, [0, 1])])
    dataset = GazeDataset("toy", stimuli, fixations)
    params = ScanMatchParams(Grid(3, 1), 2.0, 0.0, 0.0)

    def edits(length: int | None) -> list[float]:
        return [row["string_edit_distance"] for row in human_pairs(dataset, params, {0}, length)[0]]

    assert edits(None) == [1.0]
    assert sorted(edits(2)) == [0.0, 1.0]
    assert sorted(edits(3)) == [1.0, 1.0]  # as long as the longest: each pair in both orders
