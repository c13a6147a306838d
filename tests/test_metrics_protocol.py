"""The benchmark protocol's maps against references derived without the code under test.

CC, KLDiv, sAUC and the unoptimised SIM are compared with pysaliency 0.2.22's own models
(``DensitySaliencyMapModel``, ``BluringSaliencyMapModel``, ``ShuffledBaselineModel``,
``ShuffledAUCSaliencyMapModel``) on real OSIE fixations, scored by ``evaluate_saliency`` as
``code.evaluate saliency --protocol benchmark`` does. The densities are built from the fixations
(a kernel density of half of the viewers, a centre bias shared by all images, a uniform floor),
so every metric is far from chance and a wrong map moves it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pysaliency
import pytest
import torch
from scipy.ndimage import gaussian_filter

from benchmarks.osie import OsieFixations, osie_dataset, pysaliency_reference
from code.metrics.baselines import CrossValidatedCenterBias, LeaveOneSubjectOutGoldStandard
from code.metrics.protocol import ShuffledBaseline
from code.metrics.scoring import evaluate_saliency, sim_optimisation

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
    return evaluate_saliency(
        dataset,
        directory,
        "log-density",
        "benchmark",
        SIGMA,
        None,
        CrossValidatedCenterBias(0.05, 0.01, 3).fit(dataset),
        LeaveOneSubjectOutGoldStandard(0.03, 0.01),
        sim_optimisation(0),
        torch.device("cpu"),
        1,
    )


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
    ours = benchmark_result(osie, log_densities, tmp_path)["metrics"]
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
