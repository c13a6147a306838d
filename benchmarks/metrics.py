"""Time to score OSIE's images on every saliency metric: ours vs pysaliency 0.2.22, one run.

    uv run python -m benchmarks.metrics [--images 700] [--judd-jitter] [--workers N]

Both sides score the same log-densities (smooth random fields, stored as float32 like a
model's output) against the same fixations with the raw protocol: AUC, sAUC, AUC-Judd, NSS,
CC, KLDiv, SIM (empirical map σ = 24 px), LL and IG over a Gaussian centre-bias baseline.
pysaliency's time includes its own gold-standard fixation maps (cached between CC, KLDiv and
SIM, as in its normal use); neither side's time includes reading the maps. pysaliency runs
on one thread; ours is timed on one thread and then on ``--workers`` threads (default: every
core available), scoring images concurrently as ``code.evaluate`` does. Prints the times,
the ratios and each metric's relative disagreement.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.special import logsumexp

from benchmarks.osie import pysaliency_metrics, pysaliency_reference, read_osie
from code.metrics.evaluator import JuddJitter, SaliencyEvaluator
from code.metrics.protocol import SimOptimisation
from code.metrics.saliency import ShuffledNonfixations
from code.utils.parallel import available_cpus, ordered_thread_map

SIGMA = 24.0
DISTINCT_MAPS = 40  # maps are reused cyclically to keep memory small; the work is per image


def make_maps(sizes: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    h, w = sizes[0]
    fields = []
    for _ in range(DISTINCT_MAPS):
        field = gaussian_filter(rng.normal(size=(h, w)), 25) * 60
        fields.append((field - logsumexp(field)).astype(np.float32).astype(np.float64))
    yy, xx = np.mgrid[:h, :w]
    blob = -((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (2 * (0.25 * w) ** 2)
    return [fields[i % DISTINCT_MAPS] for i in range(len(sizes))], blob - logsumexp(blob)


def ours(
    osie, log_densities, baseline, jitter: bool, workers: int
) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    evaluator = SaliencyEvaluator("log-density", "raw", SIGMA, SimOptimisation(0, 100, 4, 1e-3, 0))
    nonfixations = ShuffledNonfixations(osie.x, osie.y, osie.image, osie.sizes)
    judd = JuddJitter(42) if jitter else None

    def images():  # in order: the jitter is one random sequence
        for i in range(len(osie.stems)):
            yield i, nonfixations.of(i), None if judd is None else judd.draw(*osie.sizes[i])

    def score(image):
        i, (sx, sy), judd_jitter = image
        xs, ys = osie.of(i)
        return evaluator.score(
            log_densities[i],
            xs,
            ys,
            baseline_log_density=baseline,
            shuffled_xs=sx,
            shuffled_ys=sy,
            judd_jitter=judd_jitter,
        )

    for scores in ordered_thread_map(score, images(), workers):
        evaluator.add(scores)
    return time.perf_counter() - start, evaluator.compute()


def reference(osie, log_densities, baseline, jitter: bool) -> tuple[float, dict[str, float]]:

    maps = [np.exp(logp) for logp in log_densities[:DISTINCT_MAPS]]
    maps = [maps[i % DISTINCT_MAPS] for i in range(len(log_densities))]
    stimuli, fixations, smap_model = pysaliency_reference(osie, maps, log_densities=False)
    _, _, model = pysaliency_reference(osie, log_densities, log_densities=True)
    _, _, base = pysaliency_reference(osie, [baseline] * len(log_densities), log_densities=True)
    # compile pysaliency's numba kernels outside the timing
    smap_model.AUC(stimuli[:1], fixations[fixations.n == 0])
    smap_model.AUC_Judd(stimuli[:1], fixations[fixations.n == 0], jitter=jitter)
    start = time.perf_counter()
    values = pysaliency_metrics(stimuli, fixations, smap_model, model, base, SIGMA, jitter)
    return time.perf_counter() - start, values


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=700)
    parser.add_argument(
        "--judd-jitter",
        action="store_true",
        help="AUC-Judd with pysaliency's tie-breaking noise on both sides",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=available_cpus(),
        help="threads of ours' second timing (the first uses one, as pysaliency does)",
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(1)
    osie = read_osie(args.images)
    log_densities, baseline = make_maps(osie.sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ref, expected = reference(osie, log_densities, baseline, args.judd_jitter)
    t_one, got = ours(osie, log_densities, baseline, args.judd_jitter, 1)
    t_all, got_all = ours(osie, log_densities, baseline, args.judd_jitter, args.workers)
    if got_all != got:
        raise AssertionError(f"{args.workers} threads changed the results: {got_all} != {got}")
    print(f"{len(osie.stems)} images, {len(osie.x)} fixations, AUC-Judd jitter: {args.judd_jitter}")
    print(f"{'metric':<10}{'ours':>20}{'pysaliency':>20}{'rel. diff':>12}")
    for metric, value in expected.items():
        rel = abs(got[metric] - value) / abs(value)
        print(f"{metric:<10}{got[metric]:>20.12f}{value:>20.12f}{rel:>12.1e}")
    print(f"{'pysaliency, 1 thread:':<24}{t_ref:6.2f} s")
    for label, seconds in (("ours, 1 thread:", t_one), (f"ours, {args.workers} threads:", t_all)):
        print(f"{label:<24}{seconds:6.2f} s   {t_ref / seconds:.1f}x faster")
    print("ours gave identical results on both thread counts")


if __name__ == "__main__":
    main()
