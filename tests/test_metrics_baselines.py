import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.special import logsumexp

from benchmarks.osie import osie_dataset
from code.data.centerbias import CenterBias
from code.data.gaze import Fixations, GazeDataset, Stimulus
from code.metrics.baselines import CrossValidatedCenterBias, LeaveOneSubjectOutGoldStandard


@pytest.fixture(scope="module")
def dataset(osie_csv):
    return osie_dataset(osie_csv)


def test_center_bias_is_a_density_at_every_size_asked_for(dataset):
    model = CenterBias(0.05, 0.01).fit(dataset)
    first = model.log_density(600, 800).copy()
    for size in [(600, 800), (30, 50), (600, 800), (41, 41)]:
        log_p = model.log_density(*size)
        assert log_p.shape == size
        assert logsumexp(log_p) == pytest.approx(0, abs=1e-12)
    np.testing.assert_array_equal(model.log_density(600, 800), first)
    # most mass in the middle, as on OSIE's 800×600 photographs
    assert first[300, 400] > first[10, 10] + 1


def test_refitting_replaces_the_kept_map(dataset):
    model = CenterBias(0.05, 0.01).fit(dataset)
    before = model.log_density(60, 80).copy()
    model.fit(dataset.subset(range(3)))
    assert not np.array_equal(model.log_density(60, 80), before)


def test_cross_validated_center_bias_never_sees_the_image_itself(dataset):
    folds = 5
    cv = CrossValidatedCenterBias(0.05, 0.01, folds).fit(dataset)
    for image in [0, 7]:
        others = [i for i in range(len(dataset.stimuli)) if i % folds != image % folds]
        alone = CenterBias(0.05, 0.01).fit(dataset.subset(others))
        np.testing.assert_array_equal(cv.log_density(image, 60, 80), alone.log_density(60, 80))


# ------------------------------------------------- hand-built data sets with known answers


def hand_dataset(sizes: list[tuple[int, int]], rows: list[tuple[int, int, float, float]]):
    """A data set of blank images of ``sizes`` (height, width) and the fixations ``rows``:
    (image, subject, x, y), one scanpath per (image, subject)."""
    image, subject, x, y = (np.array(column) for column in zip(*rows, strict=True))
    n = len(rows)
    trains = {key: k for k, key in enumerate(dict.fromkeys(zip(image, subject, strict=True)))}
    fixations = Fixations(
        x=x.astype(np.float64),
        y=y.astype(np.float64),
        image=image.astype(np.int64),
        subject=subject.astype(np.int64),
        train=np.array([trains[key] for key in zip(image, subject, strict=True)], np.int64),
        index=np.zeros(n, np.int64),
        onset_ms=np.full(n, np.nan),
        duration_ms=np.full(n, np.nan),
    )
    stimuli = [Stimulus(f"hand_{i}", h, w, None) for i, (h, w) in enumerate(sizes)]
    return GazeDataset("hand", stimuli, fixations)


def test_gold_standard_leaves_out_every_fixation_of_the_subject_written_out_by_hand():
    """Three subjects, pixels counted by hand (the bandwidth is so small that the kernel is a
    single pixel: σ = 0.005·12 px puts e^-139 on a neighbour). Catches: not leaving anyone out
    (s0 at P would be 3/7), leaving out only the fixation itself (2/6), normalising the others'
    counts by every subject's (1/7), and an image without a second subject getting anything but
    the uniform share."""
    P, Q, R = (2.5, 3.5), (9.2, 6.7), (5.5, 1.5)  # (x, y) on the 8x12 image 0
    S, T = (1.5, 0.5), (6.5, 4.5)  # on the 5x7 image 1
    rows = [
        (0, 0, *P), (0, 0, *P),  # subject 0: P twice
        (0, 1, *P), (0, 1, *Q),  # subject 1: P, Q
        (0, 2, *Q), (0, 2, *Q), (0, 2, *R),  # subject 2: Q twice, R
        (1, 0, *S),  # image 1: subjects 0 and 2 only
        (1, 2, *S), (1, 2, *T),
        (2, 1, 0.5, 0.5),  # image 2 (4x4): subject 1 alone
    ]  # fmt: skip
    w = 0.1
    u0, u1, u2 = w / 96, w / 35, w / 16
    expected = [
        (1 - w) * 1 / 5 + u0,  # s0 at P: others s1, s2 have 5 fixations, 1 at P
        (1 - w) * 1 / 5 + u0,
        (1 - w) * 2 / 5 + u0,  # s1 at P: others s0, s2: 5 fixations, 2 at P
        (1 - w) * 2 / 5 + u0,  # s1 at Q: 2 of s2's at Q
        (1 - w) * 1 / 4 + u0,  # s2 at Q: others s0, s1: 4 fixations, 1 at Q
        (1 - w) * 1 / 4 + u0,
        u0,  # s2 at R: nobody else looked there
        (1 - w) * 1 / 2 + u1,  # image 1, s0 at S: s2's 2 fixations, 1 at S
        (1 - w) * 1 / 1 + u1,  # s2 at S: s0's only fixation is at S
        u1,  # s2 at T
        u2,  # image 2: no other subject
    ]
    gold = LeaveOneSubjectOutGoldStandard(0.005, w)
    ll = gold.log_likelihoods(hand_dataset([(8, 12), (5, 7), (4, 4)], rows))
    np.testing.assert_allclose(ll, np.log(expected), rtol=1e-12)


def test_gold_standard_is_the_blurred_map_of_the_other_subjects():
    """A 30x70 image, fixations of three subjects, some at the border; the reference builds
    each subject's density as scipy's reflecting Gaussian filter of the other subjects' count
    map (σ = bandwidth · 70 px), mixed with the uniform density. Catches the subject's own
    fixations (or only the fixation itself) left in its map, the others' kernel mass normalised
    over every subject, the row and column blurs swapped, and σ from the shorter side."""
    rng = np.random.default_rng(3)
    height, width, bandwidth, w = 30, 70, 0.04, 0.05
    rows = []
    for subject in range(3):
        # each subject looks at its own region, so the others' map predicts it poorly
        centre = np.array([15 + 20 * subject, 8 + 6 * subject])
        for _ in range(12):
            x, y = np.clip(centre + rng.normal(0, [14, 7]), 0, [width - 0.01, height - 0.01])
            rows.append((0, subject, x, y))
    rows += [(0, 0, 0.2, 0.3), (0, 1, 69.9, 29.9), (0, 2, 69.5, 0.1)]  # corners
    dataset = hand_dataset([(height, width)], rows)
    fix = dataset.fixations
    expected = np.empty(len(fix))
    for subject in range(3):
        others = fix.subject != subject
        counts = np.zeros((height, width))
        np.add.at(counts, (fix.y[others].astype(int), fix.x[others].astype(int)), 1)
        blurred = gaussian_filter(counts, bandwidth * width, mode="reflect", truncate=4.0)
        p = (1 - w) * blurred / blurred.sum() + w / (height * width)
        own = ~others
        expected[own] = np.log(p[fix.y[own].astype(int), fix.x[own].astype(int)])
    ll = LeaveOneSubjectOutGoldStandard(bandwidth, w).log_likelihoods(dataset)
    np.testing.assert_allclose(ll, expected, rtol=1e-9)


def corner_of_wide_image(n_images: int, height: int, width: int, seed: int):
    """Fixations around (x, y) = (0.78·width, 0.25·height): the top right of a wide image."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(400):
        x = np.clip(rng.normal(0.78 * width, 0.07 * width), 0, width - 1e-3)
        y = np.clip(rng.normal(0.25 * height, 0.08 * height), 0, height - 1e-3)
        rows.append((k % n_images, k % 5, x, y))
    return hand_dataset([(height, width)] * n_images, rows)


def test_center_bias_is_oriented_like_the_fixations_on_a_wide_image():
    """Fixations only at the top right of 60x180 images; the reference is a Gaussian kernel
    density evaluated directly at every pixel centre in normalised coordinates (x/width,
    y/height). Catches the density transposed (histogram of (x, y) for (row, column)): total
    variation 0.999 instead of 0.01; x normalised by the height; the resize's row and column
    factors swapped; and the map mirrored (a 2x3 map must peak at its top right)."""
    height, width, bandwidth, w = 60, 180, 0.05, 1e-3
    dataset = corner_of_wide_image(3, height, width, seed=0)
    fix = dataset.fixations
    log_p = CenterBias(bandwidth, w).fit(dataset).log_density(height, width)
    u = (np.arange(height) + 0.5)[:, None, None] / height
    v = (np.arange(width) + 0.5)[None, :, None] / width
    kernel = np.exp(-((u - fix.y / height) ** 2 + (v - fix.x / width) ** 2) / (2 * bandwidth**2))
    reference = kernel.sum(-1)
    reference = (1 - w) * reference / reference.sum() + w / (height * width)
    assert log_p.shape == (height, width)
    assert 0.5 * np.abs(np.exp(log_p) - reference).sum() < 0.03
    tiny = np.exp(CenterBias(bandwidth, w).fit(dataset).log_density(2, 3))
    assert tiny.shape == (2, 3) and np.unravel_index(tiny.argmax(), tiny.shape) == (0, 2)
    assert tiny[0, 2] > 0.5 and tiny[1].sum() < 0.01
    # the cross-validated baseline of the scored images: every fold oriented the same way
    cv = CrossValidatedCenterBias(bandwidth, w, 3).fit(dataset)
    for image in range(3):
        p = np.exp(cv.log_density(image, height, width))
        assert 0.5 * np.abs(p - reference).sum() < 0.05


def test_fitted_gold_standard_weight_beats_every_weight_on_a_grid(dataset):
    """On 30 OSIE images at a fixed bandwidth, the uniform weight ``fit`` chooses gives a
    leave-one-subject-out likelihood at least that of every weight on a grid (each scored by a
    gold standard with that weight fixed). Catches a search over the wrong side of the logistic
    (sigmoid(+x) in the objective, sigmoid(−x) when reading it back), a sign flip of the
    objective and a weight read from the wrong end of the bounds."""
    bandwidth = LeaveOneSubjectOutGoldStandard.BANDWIDTHS[6]
    fitted = LeaveOneSubjectOutGoldStandard(bandwidth, None).fit(dataset)
    best = fitted.log_likelihoods(dataset).sum()
    for weight in np.geomspace(1e-4, 0.9, 25):
        fixed = LeaveOneSubjectOutGoldStandard(bandwidth, weight).log_likelihoods(dataset)
        assert best >= fixed.sum() - 1e-6, weight
    assert 1e-4 < fitted.uniform_weight < 0.9  # inside the grid: a real optimum, not a bound


def test_cross_validated_center_bias_takes_two_folds_and_refuses_one():
    """Two folds (each half of the images fitted on the other) is the smallest cross-validation;
    catches a check of ``folds <= 2``."""
    CrossValidatedCenterBias(0.1, 0.01, 2)
    with pytest.raises(ValueError, match="at least 2 folds"):
        CrossValidatedCenterBias(0.1, 0.01, 1)
