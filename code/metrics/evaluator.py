"""Streaming saliency evaluation: per-image sums and counts, mergeable across DDP ranks."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from code.metrics import saliency as M
from code.metrics.protocol import MetricMaps, SimOptimisation, benchmark_maps, raw_maps

METRICS = ("AUC", "sAUC", "AUC_Judd", "NSS", "CC", "KLDiv", "SIM", "LL", "IG")
Kind = Literal["log-density", "saliency-map"]
Protocol = Literal["raw", "benchmark"]
ImageScores = dict[str, tuple[float, float]]  # metric -> (sum, count) of one image
JUDD_JITTER = 1e-7  # size of the tie-breaking noise of MIT's / pysaliency's AUC-Judd


class JuddJitter:
    """AUC-Judd's tie-breaking noise: 1e-7·N(0, 1) per pixel, drawn image after image.

    pysaliency's ``AUC_Judd(random_seed=seed)`` draws ``np.random.RandomState(seed).randn`` for
    each image with fixations, in data-set order; drawing here in the same order reproduces it.
    Every prediction scored on an image gets that image's draw (in pysaliency each model has
    its own generator with the same seed, so all draw the same sequence).
    """

    def __init__(self, seed: int) -> None:
        self._rng = np.random.RandomState(seed)

    def draw(self, height: int, width: int) -> np.ndarray:
        return self._rng.randn(height, width) * JUDD_JITTER


class SaliencyEvaluator:
    """Accumulates every saliency metric image by image, with pysaliency's averaging.

    Per fixation (sum over fixations / number of fixations): AUC and sAUC (per-image AUC weighted
    by the image's fixation count), NSS, LL, IG. Per image (mean of per-image values): AUC_Judd,
    CC, KLDiv, SIM. The state is a plain float64 tensor of sums and counts, so ranks combine by
    adding states (never by averaging averages).

    ``kind="log-density"``: predictions are natural-log densities; LL and IG (bits, against
    ``baseline_log_density``) are reported. With ``protocol="raw"`` every map-based metric scores
    the density exp(log p); ``"benchmark"`` scores the map the probabilistic protocol derives
    for each metric (:mod:`code.metrics.protocol`). ``kind="saliency-map"``: any finite map,
    scored as given (raw protocol only), no LL/IG.

    :meth:`score` only reads the evaluator, so threads may score images concurrently;
    :meth:`add` then sums the scores, in image order for results independent of the threads.
    Images without fixations are skipped.
    """

    STATE_ROWS = (*METRICS, "images|fixations")

    def __init__(
        self,
        kind: Kind,
        protocol: Protocol,
        fixation_map_sigma: float,
        sim_optimisation: SimOptimisation,
    ) -> None:
        if kind not in ("log-density", "saliency-map"):
            raise ValueError(f"kind must be 'log-density' or 'saliency-map', got {kind!r}")
        if protocol not in ("raw", "benchmark"):
            raise ValueError(f"protocol must be 'raw' or 'benchmark', got {protocol!r}")
        if protocol == "benchmark" and kind != "log-density":
            raise ValueError(
                "the benchmark protocol derives maps from a density: needs kind 'log-density'"
            )
        self.kind = kind
        self.protocol = protocol
        self.sigma = fixation_map_sigma
        self.sim_optimisation = sim_optimisation
        self._state = torch.zeros(len(self.STATE_ROWS), 2, dtype=torch.float64)

    def update(
        self, prediction: M.ArrayLike, xs: M.ArrayLike, ys: M.ArrayLike, **inputs
    ) -> dict[str, float]:
        """:meth:`score` one image and :meth:`add` it; returns the image's own values."""
        return self.add(self.score(prediction, xs, ys, **inputs))

    def score(
        self,
        prediction: M.ArrayLike,
        xs: M.ArrayLike,
        ys: M.ArrayLike,
        *,
        name: str = "prediction",
        baseline_log_density: M.ArrayLike | None = None,
        shuffled_xs: M.ArrayLike | None = None,
        shuffled_ys: M.ArrayLike | None = None,
        shuffled_log_density: M.ArrayLike | None = None,
        empirical_map: torch.Tensor | None = None,
        judd_jitter: np.ndarray | None = None,
    ) -> ImageScores:
        """Every metric of one image, as (sum, count) pairs for :meth:`add`.

        ``xs, ys``: its fixations (original pixels). ``shuffled_xs/ys``: sAUC negatives, from
        :class:`code.metrics.saliency.ShuffledNonfixations`. ``shuffled_log_density``: the
        protocol's sAUC baseline (benchmark protocol only). ``empirical_map``: the image's
        :func:`code.metrics.saliency.empirical_saliency_map` at this evaluator's σ, when the
        caller scores several predictions of one image (it is computed here otherwise).
        ``judd_jitter``: the image's :class:`JuddJitter` draw; None scores AUC-Judd without.
        ``name`` labels errors.
        """
        pred = M.as_float64(prediction)
        if pred.ndim != 2:
            raise ValueError(f"{name}: prediction must be a 2-D map, got shape {tuple(pred.shape)}")
        n = len(xs)
        if n == 0:
            return {}
        if self.kind == "log-density":
            scored = M.density_from_log_density(pred, name)
        elif torch.isfinite(pred).all():
            scored = pred
        else:
            raise ValueError(f"{name}: saliency map contains NaN or inf")
        maps = self._maps(pred, scored, shuffled_log_density)
        # pixel indices once for all metrics (they take integer coordinates as pixels)
        ys, xs = M.pixel_index(xs, ys, pred.device)
        values: ImageScores = {}
        ordered = M.sorted_values(maps.auc)
        values["AUC"] = (M.auc(maps.auc, xs, ys, ordered).item() * n, n)
        if shuffled_xs is not None and maps.sauc is not None:
            values["sAUC"] = (
                M.shuffled_auc(maps.sauc, xs, ys, shuffled_xs, shuffled_ys).item() * n,
                n,
            )
        values["AUC_Judd"] = (M.auc_judd(maps.auc, xs, ys, judd_jitter, ordered).item(), 1)
        values["NSS"] = (M.nss(maps.auc, xs, ys).sum().item(), n)
        height, width = pred.shape
        empirical = (
            M.empirical_saliency_map(xs, ys, height, width, self.sigma, pred.device)
            if empirical_map is None
            else empirical_map
        )
        values["CC"] = (M.cc(maps.fixation_map, empirical).item(), 1)
        q = M.to_density(empirical)
        p = M.to_density(maps.fixation_map)
        values["KLDiv"] = (M.kl_div_of_densities(p, q).item(), 1)
        p_sim = p if maps.sim is maps.fixation_map else M.to_density(maps.sim)
        values["SIM"] = (M.sim_of_densities(p_sim, q).item(), 1)
        if self.kind == "log-density":
            values["LL"] = (M.log_likelihoods(pred, xs, ys).sum().item(), n)
            if baseline_log_density is not None:
                gains = M.information_gains(pred, baseline_log_density, xs, ys)
                values["IG"] = (gains.sum().item(), n)
        return values

    def add(self, scores: ImageScores) -> dict[str, float]:
        """Add one image's :meth:`score` to the sums; returns the image's own values."""
        if not scores:
            return {}
        for metric, (total, count) in scores.items():
            self._state[METRICS.index(metric)] += torch.tensor([total, count], dtype=torch.float64)
        n_fixations = scores["AUC"][1]  # AUC is averaged per fixation
        self._state[-1] += torch.tensor([1.0, n_fixations], dtype=torch.float64)
        return {metric: total / count for metric, (total, count) in scores.items()}

    def _maps(
        self, pred: torch.Tensor, scored: torch.Tensor, shuffled_log_density: M.ArrayLike | None
    ) -> MetricMaps:
        if self.protocol == "raw":
            return raw_maps(scored)
        shuffled = (
            None
            if shuffled_log_density is None
            else M.as_float64(shuffled_log_density, pred.device)
        )
        return benchmark_maps(pred, self.sigma, shuffled, self.sim_optimisation)

    def state(self) -> torch.Tensor:
        """(len(METRICS) + 1, 2) float64: [sum, count] per metric in ``METRICS`` order, then
        [number of images, number of fixations]."""
        return self._state.clone()

    def merge(self, state: torch.Tensor) -> None:
        """Add another evaluator's ``state()`` (e.g. from another rank) to this one."""
        if state.shape != self._state.shape:
            raise ValueError(f"state shape {tuple(state.shape)} != {tuple(self._state.shape)}")
        self._state += state.to(self._state)

    @property
    def n_images(self) -> int:
        return int(self._state[-1, 0])

    @property
    def n_fixations(self) -> int:
        return int(self._state[-1, 1])

    def compute(self) -> dict[str, float]:
        """Metric name -> data-set value, for the metrics that received any image."""
        sums, counts = self._state[:-1, 0], self._state[:-1, 1]
        return {m: (sums[i] / counts[i]).item() for i, m in enumerate(METRICS) if counts[i] > 0}
