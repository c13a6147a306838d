"""Agreement with pysaliency 0.2.22 (test-only reference) on real OSIE fixations."""

import warnings

import numpy as np
import pysaliency
import pytest

from benchmarks.osie import pysaliency_metrics, pysaliency_reference
from code.metrics import saliency as M
from code.metrics.evaluator import JuddJitter, SaliencyEvaluator
from code.metrics.protocol import SimOptimisation

RTOL = 1e-6
SIGMA = 24.0


def reference_values(osie_csv, log_densities, baseline_log_densities, jitter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = [np.exp(logp) for logp in log_densities]
        stimuli, fixations, smap_model = pysaliency_reference(osie_csv, maps, log_densities=False)
        _, _, model = pysaliency_reference(osie_csv, log_densities, log_densities=True)
        _, _, baseline = pysaliency_reference(osie_csv, baseline_log_densities, log_densities=True)
        return pysaliency_metrics(stimuli, fixations, smap_model, model, baseline, SIGMA, jitter)


@pytest.mark.parametrize("jitter", [False, True])
def test_agrees_with_pysaliency(osie_csv, osie_log_densities, jitter):
    # IG over a centre-bias-like baseline (a Gaussian blob), not just the uniform model
    h, w = osie_csv.sizes[0]
    yy, xx = np.mgrid[:h, :w]
    blob = -((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (2 * (0.25 * w) ** 2)
    baseline = blob - np.log(np.exp(blob).sum())
    expected = reference_values(
        osie_csv, osie_log_densities, [baseline] * len(osie_csv.stems), jitter
    )

    evaluator = SaliencyEvaluator(
        "log-density",
        "raw",
        SIGMA,
        SimOptimisation(steps=0, fixation_count=100, batch_size=4, learning_rate=1e-3, seed=0),
    )
    nonfixations = M.ShuffledNonfixations(osie_csv.x, osie_csv.y, osie_csv.image, osie_csv.sizes)
    judd_jitter = JuddJitter(42) if jitter else None
    for i in range(len(osie_csv.stems)):
        xs, ys = osie_csv.of(i)
        sx, sy = nonfixations.of(i)
        evaluator.update(
            osie_log_densities[i],
            xs,
            ys,
            baseline_log_density=baseline,
            shuffled_xs=sx,
            shuffled_ys=sy,
            judd_jitter=None if judd_jitter is None else judd_jitter.draw(*osie_csv.sizes[i]),
        )
    ours = evaluator.compute()
    for metric, value in expected.items():
        assert ours[metric] == pytest.approx(value, rel=RTOL), metric


def test_saliency_map_kind_agrees(osie_csv):
    """Unnormalised maps with negative values (KLDiv/SIM shift them, NSS/CC standardise)."""
    rng = np.random.default_rng(5)
    from scipy.ndimage import gaussian_filter

    maps = [gaussian_filter(rng.normal(size=tuple(s)), 10) for s in osie_csv.sizes[:8]]
    sub = type(osie_csv)(**{**osie_csv.__dict__})
    keep = osie_csv.image < 8
    for name in ("x", "y", "image", "subject", "fix_index", "duration_ms"):
        setattr(sub, name, getattr(osie_csv, name)[keep])
    sub.stems, sub.sizes = osie_csv.stems[:8], osie_csv.sizes[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stimuli, fixations, model = pysaliency_reference(sub, maps, log_densities=False)
        gold = pysaliency.FixationMap(stimuli, fixations, kernel_size=SIGMA)
        eps = 2.2204e-16
        expected = {
            "AUC": model.AUC(stimuli, fixations),
            "NSS": model.NSS(stimuli, fixations),
            "CC": model.CC(stimuli, gold),
            "SIM": model.SIM(stimuli, gold),
            "KLDiv": model.image_based_kl_divergence(
                stimuli, gold, minimum_value=0, log_regularization=eps, quotient_regularization=eps
            ),
        }
    evaluator = SaliencyEvaluator("saliency-map", "raw", SIGMA, SimOptimisation(0, 100, 4, 1e-3, 0))
    for i in range(8):
        evaluator.update(maps[i], *sub.of(i))
    ours = evaluator.compute()
    for metric, value in expected.items():
        assert ours[metric] == pytest.approx(value, rel=RTOL), metric
