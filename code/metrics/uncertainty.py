"""Uncertainty from per-image scores: bootstrap standard errors and intervals, paired tests.

A data-set metric is a weighted mean of per-image values: weighted by the image's fixation
count (scanpath pairs) for the metrics averaged per fixation (pair), as pysaliency does, with
weight 1 for those averaged per image (each :class:`code.metrics.registry.Metric` says which).
Resampling images and recomputing that weighted mean gives the bootstrap distribution, so the
interval is that of the number the table reports.
"""

from __future__ import annotations

import numpy as np

from code.metrics.registry import metric as metric_record

RESAMPLES = 2000
SEED = 0


def weights(metric: str, counts: np.ndarray) -> np.ndarray:
    """Each image's weight in the data-set value of ``metric``: its count (fixations; for
    scanpath metrics, scanpath pairs) where the metric is averaged over them, else 1."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts if metric_record(metric).weighted else np.ones_like(counts)


def _resampled_means(values: np.ndarray, w: np.ndarray, draws: np.ndarray) -> np.ndarray:
    return (values[draws] * w[draws]).sum(1) / w[draws].sum(1)


def _draws(n_images: int) -> np.ndarray:
    return np.random.default_rng(SEED).integers(0, n_images, size=(RESAMPLES, n_images))


def bootstrap(per_image: dict[str, list[float]], counts: list[int]) -> dict[str, dict]:
    """Per metric: the weighted mean (``weights``), the bootstrap standard error and 95 %
    percentile interval (``RESAMPLES`` resamples of the images, seeded, so the numbers are
    reproducible). An image without a value (NaN: e.g. MultiMatch of one-fixation scanpaths)
    weighs 0."""
    draws = _draws(len(counts))
    result = {}
    for metric, values in per_image.items():
        v, w = np.asarray(values, dtype=np.float64), weights(metric, counts)
        w = np.where(np.isnan(v), 0.0, w)
        v = np.nan_to_num(v)
        means = _resampled_means(v, w, draws)
        low, high = np.percentile(means, [2.5, 97.5])
        mean = float((v * w).sum() / w.sum())
        result[metric] = {
            "mean": mean,
            "se": float(means.std(ddof=1)),
            "ci95": [float(low), float(high)],
        }
    return result


def paired_comparison(
    a: dict[str, list[float]], b: dict[str, list[float]], n_fixations: list[int]
) -> dict[str, dict]:
    """Per metric, A − B on the same images (in the same order): the difference of the
    data-set values with its bootstrap 95 % interval (images resampled in pairs), and the
    Wilcoxon signed-rank and paired t tests on the per-image values."""
    # imported here: at the top, scipy.stats would add 0.9 s to every command's start-up
    from scipy import stats

    draws = _draws(len(n_fixations))
    result = {}
    for metric in a.keys() & b.keys():
        va, vb = np.asarray(a[metric], np.float64), np.asarray(b[metric], np.float64)
        w = weights(metric, n_fixations)
        differences = _resampled_means(va, w, draws) - _resampled_means(vb, w, draws)
        low, high = np.percentile(differences, [2.5, 97.5])
        delta = va - vb
        wilcoxon = stats.wilcoxon(va, vb) if np.any(delta != 0) else None
        result[metric] = {
            "A": float((va * w).sum() / w.sum()),
            "B": float((vb * w).sum() / w.sum()),
            "difference": float((delta * w).sum() / w.sum()),
            "ci95": [float(low), float(high)],
            "wilcoxon_p": 1.0 if wilcoxon is None else float(wilcoxon.pvalue),
            "t_p": 1.0 if not np.any(delta != 0) else float(stats.ttest_rel(va, vb).pvalue),
        }
    return {metric: result[metric] for metric in a if metric in result}
