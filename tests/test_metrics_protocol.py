"""The benchmark protocol's maps against references derived without the code under test.

CC, KLDiv, sAUC and the unoptimised SIM are compared with pysaliency 0.2.22's own models
(``DensitySaliencyMapModel``, ``BluringSaliencyMapModel``, ``ShuffledBaselineModel``,
``ShuffledAUCSaliencyMapModel``) on real OSIE fixations, scored by ``evaluate_saliency`` as
``code.evaluate saliency --protocol benchmark`` does. The densities are built from the fixations
(a kernel density of half of the viewers, a centre bias shared by all images, a uniform floor),
so every metric is far from chance and a wrong map moves it.

The SIM-optimal map is checked where its optimum can be derived independently: without blur,
E[SIM] is a sum of per-pixel concave functions of binomial counts whose maximum is found
exactly by hand; with blur, the same per-pixel structure gives the maximiser of a Monte Carlo
estimate of E[SIM] (empirical maps drawn with numpy and blurred with scipy).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pysaliency
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import binom

from benchmarks.osie import OsieFixations, osie_dataset, pysaliency_reference
from code.metrics.baselines import (
    CrossValidatedCenterBias,
    EvaluationBaselines,
    LeaveOneSubjectOutGoldStandard,
)
from code.metrics.dataset_scoring import SaliencySettings, evaluate_saliency, sim_optimisation
from code.metrics.evaluator import SaliencyEvaluator
from code.metrics.protocol import ShuffledBaseline, SimOptimisation, benchmark_maps

SIGMA = 24.0  # px: the empirical fixation maps' blur
RTOL = 1e-9
KLD_EPS = 2.2204e-16  # MIT's KL-divergence regularisation
N_IMAGES = 6
CROPPED = (450, 700)  # the size of the last half of the images in the mixed-size data set


def first_images(osie: OsieFixations, n: int, cropped: tuple[int, int] | None) -> OsieFixations:
    """The first ``n`` images; with ``cropped``, the last half cut to that (height, width) at the
    top left, keeping the fixations inside, so the data set has two image sizes."""
    keep = osie.image < n
    sizes = osie.sizes[:n].copy()
    if cropped is not None:
        height, width = cropped
        half = n // 2
        outside = (osie.image >= half) & ((osie.x >= width) | (osie.y >= height))
        keep &= ~outside
        sizes[half:] = cropped
    columns = ("x", "y", "image", "subject", "fix_index", "duration_ms")
    return OsieFixations(osie.stems[:n], sizes, *(getattr(osie, c)[keep] for c in columns))


def correlated_log_densities(osie: OsieFixations) -> list[np.ndarray]:
    """Per image: 0.5 · kernel density (σ = 30 px) of the even-numbered viewers' fixations
    + 0.4 · a central Gaussian (the same for every image, so the shuffled baseline has
    structure to divide out) + 0.1 · uniform; natural-log, float64, normalised."""
    result = []
    for i, (height, width) in enumerate(osie.sizes):
        xs, ys = osie.of(i)
        even = osie.subject[osie.image == i] % 2 == 0
        counts = np.zeros((height, width))
        np.add.at(counts, (ys[even].astype(int), xs[even].astype(int)), 1)
        kernel = gaussian_filter(counts, 30.0)
        yy, xx = np.mgrid[:height, :width]
        center = np.exp(
            -((yy - height / 2) ** 2 + (xx - width / 2) ** 2) / (2 * (0.2 * width) ** 2)
        )
        density = 0.5 * kernel / kernel.sum() + 0.4 * center / center.sum() + 0.1 / (height * width)
        result.append(np.log(density / density.sum()))
    return result


def pysaliency_benchmark_values(
    osie: OsieFixations, log_densities: list[np.ndarray], compute_size: tuple[int, int]
) -> dict[str, float]:
    """The protocol's metrics by pysaliency: AUC and NSS of the density, CC, KLDiv and SIM of
    the density blurred with σ (reflecting borders, as the empirical maps), sAUC of
    log p − log p_shuffled with pysaliency's shuffled baseline computed at ``compute_size``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stimuli, fixations, model = pysaliency_reference(osie, log_densities, log_densities=True)
        gold = pysaliency.FixationMap(stimuli, fixations, kernel_size=SIGMA)
        density = pysaliency.DensitySaliencyMapModel(model)
        expected = pysaliency.saliency_map_models.BluringSaliencyMapModel(
            density, SIGMA, mode="reflect"
        )
        baseline = pysaliency.models.ShuffledBaselineModel(
            model, stimuli, compute_size=compute_size, library="numpy"
        )
        log_ratio = pysaliency.models.ShuffledAUCSaliencyMapModel(model, baseline)
        return {
            "AUC": density.AUC(stimuli, fixations),
            "NSS": density.NSS(stimuli, fixations),
            "sAUC": log_ratio.sAUC(stimuli, fixations),
            "CC": expected.CC(stimuli, gold),
            "KLDiv": expected.image_based_kl_divergence(
                stimuli,
                gold,
                minimum_value=0,
                log_regularization=KLD_EPS,
                quotient_regularization=KLD_EPS,
            ),
            "SIM": expected.SIM(stimuli, gold),
            # the same metrics of the plain density: the protocol's maps must differ from it
            "sAUC of the density": density.sAUC(stimuli, fixations),
            "CC of the density": density.CC(stimuli, gold),
        }


def benchmark_result(osie: OsieFixations, log_densities: list[np.ndarray], directory: Path):
    """``evaluate_saliency`` with the benchmark protocol (SIM unoptimised) on maps in files."""
    dataset = osie_dataset(osie)
    for stimulus, log_density in zip(dataset.stimuli, log_densities, strict=True):
        np.save(directory / f"{Path(stimulus.id).stem}.npy", log_density)
    baselines = EvaluationBaselines.build(
        dataset,
        CrossValidatedCenterBias(0.05, 0.01, 3).fit(dataset),
        LeaveOneSubjectOutGoldStandard(0.03, 0.01),
    )
    settings = SaliencySettings("log-density", "benchmark", SIGMA, None, sim_optimisation(0))
    return evaluate_saliency(dataset, directory, settings, baselines, torch.device("cpu"), 1)


@pytest.mark.parametrize(
    ("cropped", "compute_size"),
    [(None, (600, 800)), (CROPPED, (500, 500))],
    ids=["one-size", "two-sizes"],
)
def test_benchmark_protocol_agrees_with_pysaliency(osie_csv, tmp_path, cropped, compute_size):
    """The protocol's metrics equal pysaliency's on densities correlated with the fixations.

    One image size: the shuffled baseline is computed at that size; two sizes: at 500 × 500
    (pysaliency's default compute size), log-densities resized there and back.
    Caught (checked by planting each): the density scored unblurred for CC/KLDiv, or blurred
    with σ/2, or with zero instead of reflecting borders, or its log blurred; SIM (0 steps)
    scoring the unblurred density; the sAUC map log p (baseline not divided out) or
    log p_shuffled − log p (ratio inverted); the baseline computed at 500 × 500 for a one-size
    data set; with two sizes only, densities instead of log-densities resized, resizing without
    aligned corners, and a baseline averaging all N images instead of the N − 1 others (at one
    size that mean is (p + S)/N for the others' sum S, and p/(p + S) ranks pixels as p/S does,
    so sAUC is rightly the same).
    """
    osie = first_images(osie_csv, N_IMAGES, cropped)
    log_densities = correlated_log_densities(osie)
    ours = benchmark_result(osie, log_densities, tmp_path).metrics
    expected = pysaliency_benchmark_values(osie, log_densities, compute_size)
    # far from chance, and the protocol's maps score differently from the density itself
    assert expected["AUC"] > 0.9 and expected["CC"] > 0.8
    assert expected["sAUC"] > expected["sAUC of the density"] + 0.02
    assert abs(expected["CC"] - expected["CC of the density"]) > 0.02
    for metric in ("AUC", "NSS", "sAUC", "CC", "KLDiv", "SIM"):
        assert ours[metric] == pytest.approx(expected[metric], rel=RTOL), metric


def test_a_zero_density_resized_in_the_shuffled_baseline_is_not_nan():
    """The baseline's log is resized between sizes; where the other images give a pixel
    density 0 its log is −inf, and interpolating −inf (0 · −inf for a zero weight) must not
    spread NaN into the sAUC map. Caught (checked by planting it): −inf interpolated as is."""
    height, width = 5, 9
    yy, xx = np.mgrid[:height, :width]
    smooth = -((yy - 2.0) ** 2 + (xx - 4.0) ** 2) / 8
    first = torch.from_numpy(smooth - np.log(np.exp(smooth).sum()))
    second = first.clone()
    second[0, 0] = -np.inf  # density 0 there
    second -= torch.logsumexp(second.flatten(), 0)
    baseline = ShuffledBaseline((3, 5))  # another size: resized there and back
    baseline.add(first)
    baseline.add(second)
    log_shuffled = baseline.log_density_without(first)  # = the second image's density
    assert not torch.isnan(log_shuffled).any()
    assert torch.logsumexp(log_shuffled.flatten(), 0).item() == pytest.approx(0, abs=1e-12)
    assert log_shuffled[0, 0] < -1e300  # density 0 resized is 0 again
    assert torch.isfinite(log_shuffled[1:, 1:]).all()


# --------------------------------------------------------------------------- SIM-optimal map


def test_sim_optimal_map_without_blur_reaches_the_exact_optimum():
    """Without blur (σ so small the kernel is one pixel) an empirical map of n fixations drawn
    from p is c/n with c_j ~ Binomial(n, p_j), and E[SIM(s)] = Σ_j E[min(s_j, c_j/n)]: each
    term is concave and piecewise linear in s_j with slope P(c_j ≥ k) on [(k−1)/n, k/n]. Under
    Σ s = 1 the maximum takes the n largest slopes over all pixels and k, each adding 1/n to
    its pixel; here that is s = (2, 1, 1, 1, 0, 0)/5, E[SIM] = 0.63846 (the density itself
    reaches 0.60550).

    Caught (checked by planting each): the loss's sign flipped (SIM minimised); empirical maps
    left as counts (not divided by their sum); fixations drawn uniformly instead of from p;
    ``fixation_count`` not used as the number of fixations per map; a drawn pixel's row and
    column taken with the height instead of the width; the start map returned (steps ignored).
    """
    density = np.array([[0.34, 0.22, 0.16], [0.12, 0.09, 0.07]])
    n = 5

    def expected_sim(saliency: np.ndarray) -> float:
        counts = np.arange(n + 1)[:, None]
        pmf = binom.pmf(counts, n, density.ravel()[None, :])
        return float((pmf * np.minimum(saliency.ravel()[None, :], counts / n)).sum())

    slopes = binom.sf(np.arange(n)[:, None], n, density.ravel()[None, :])  # P(c_j ≥ k + 1)
    largest = np.sort(slopes.ravel())[::-1][:n]
    assert largest[-1] > np.sort(slopes.ravel())[::-1][n] + 0.05  # a unique optimum
    optimum = (slopes >= largest[-1]).sum(axis=0).reshape(density.shape) / n
    np.testing.assert_array_equal(optimum, [[0.4, 0.2, 0.2], [0.2, 0, 0]])
    best = largest.sum() / n
    assert expected_sim(optimum) == pytest.approx(best, rel=1e-12)

    opt = SimOptimisation(steps=1000, fixation_count=n, batch_size=16, learning_rate=0.02, seed=0)
    sim_map = benchmark_maps(torch.from_numpy(np.log(density)), 0.1, None, opt).sim.numpy()
    assert sim_map.sum() == pytest.approx(1, abs=1e-12)
    assert expected_sim(sim_map) > expected_sim(density) + 0.03
    assert expected_sim(sim_map) == pytest.approx(best, abs=2e-3)
    np.testing.assert_allclose(sim_map, optimum, atol=0.01)


def sampled_empirical_maps(
    density: np.ndarray, fixation_count: int, maps: int, sigma: float, seed: int
) -> np.ndarray:
    """``maps`` empirical maps, each of ``fixation_count`` fixations drawn from ``density``,
    blurred with σ (scipy, reflecting borders) and normalised: (maps, height, width)."""
    rng = np.random.default_rng(seed)
    pixels = rng.choice(density.size, size=(maps, fixation_count), p=density.ravel())
    counts = np.zeros((maps, density.size))
    np.add.at(counts, (np.repeat(np.arange(maps), fixation_count), pixels.ravel()), 1)
    blurred = gaussian_filter(
        counts.reshape(maps, *density.shape), (0, sigma, sigma), mode="reflect"
    )
    return blurred / blurred.sum(axis=(1, 2), keepdims=True)


def mean_sim(saliency: np.ndarray, empirical: np.ndarray) -> float:
    """Mean SIM of one map against each of ``empirical`` (already normalised)."""
    return float(np.minimum(saliency / saliency.sum(), empirical).sum(axis=(1, 2)).mean())


def sample_sim_optimum(empirical: np.ndarray) -> np.ndarray:
    """The map maximising the mean SIM against ``empirical``: Σ_j mean(min(s_j, X_j)) is
    separable, pixel j's slope at s_j being the fraction of samples with X_j > s_j, so at the
    optimum every pixel sits at the same upper quantile λ of its own samples, with λ set
    (bisection) so that the map sums to 1."""
    ordered = np.sort(empirical.reshape(len(empirical), -1), axis=0)

    def at(fraction_above: float) -> np.ndarray:
        return ordered[min(len(ordered) - 1, int((1 - fraction_above) * len(ordered)))]

    low, high = 0.0, 1.0
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if at(middle).sum() > 1 else (low, middle)
    return at(high).reshape(empirical.shape[1:])


def test_sim_optimal_map_with_blur_approaches_the_sampled_optimum():
    """With blur the optimum is found on 20 000 empirical maps drawn and blurred independently
    (numpy, scipy) and scored on 20 000 others: E[SIM] of the blurred density 0.5767, of that
    optimum 0.5933; the optimised map must come within 0.0015 of it, and the evaluator must
    score its SIM on the optimised map.

    Each wrong objective's own optimum falls short of that margin: sampled maps blurred with
    σ/2 (0.546) or 2σ (0.526), with zero borders (0.586), fixations drawn from the blurred
    density (0.588), twice the fixations per map (0.590). Caught (checked by planting each):
    those, the loss's sign flipped, a drawn pixel's row and column taken with the height
    instead of the width, and the evaluator scoring SIM on the blurred density.
    """
    height, width, sigma, n = 8, 11, 1.0, 4
    yy, xx = np.mgrid[:height, :width]
    density = (
        np.exp(-(yy**2 + (xx - 1) ** 2) / 2)  # a peak on the border: reflection matters
        + 0.5 * np.exp(-((yy - 5.5) ** 2 + (xx - 8) ** 2) / (2 * 1.5**2))
        + 0.01
    )
    density /= density.sum()
    optimum = sample_sim_optimum(sampled_empirical_maps(density, n, 20_000, sigma, seed=1))
    held_out = sampled_empirical_maps(density, n, 20_000, sigma, seed=2)
    start = gaussian_filter(density, sigma, mode="reflect")
    best = mean_sim(optimum, held_out)
    assert best > mean_sim(start, held_out) + 0.01

    log_density = torch.from_numpy(np.log(density))
    opt = SimOptimisation(steps=800, fixation_count=n, batch_size=64, learning_rate=0.02, seed=0)
    sim_map = benchmark_maps(log_density, sigma, None, opt).sim.numpy()
    assert mean_sim(sim_map, held_out) > best - 0.0015

    # the evaluator scores SIM on that map (the same seed gives the same map)
    rng = np.random.default_rng(3)
    pixels = rng.choice(density.size, size=n, p=density.ravel())
    xs, ys = pixels % width + 0.5, pixels // width + 0.5
    counts = np.zeros((height, width))
    np.add.at(counts, (pixels // width, pixels % width), 1)
    empirical = gaussian_filter(counts, sigma, mode="reflect")[None] / n
    values = SaliencyEvaluator("log-density", "benchmark", sigma, opt).update(log_density, xs, ys)
    assert values["SIM"] == pytest.approx(mean_sim(sim_map, empirical), rel=1e-9)
    assert abs(values["SIM"] - mean_sim(start, empirical)) > 1e-3
