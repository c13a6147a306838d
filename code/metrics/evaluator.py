"""Streaming saliency evaluation: per-image sums and counts, mergeable across DDP ranks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from code.metrics import saliency as M
from code.metrics.protocol import MetricMaps, SimOptimisation, benchmark_maps, raw_maps
from code.metrics.registry import ImageInputs, saliency_metrics
from code.models.shapes import PredictionKind

Kind = Literal["log-density", "saliency-map"]


def kind_name(kind: PredictionKind) -> Kind:
    """A prediction kind scored with the saliency metrics, as ``code.evaluate --kind`` and
    ``result.json`` spell it: the :class:`PredictionKind` member's name ("log-density",
    "saliency-map"), so the enum is the one spelling of each kind."""
    if kind not in (PredictionKind.LOG_DENSITY, PredictionKind.SALIENCY_MAP):
        raise ValueError(f"{kind.value} predictions are not scored with the saliency metrics")
    return kind.name.lower().replace("_", "-")  # type: ignore[return-value]


LOG_DENSITY = kind_name(PredictionKind.LOG_DENSITY)
SALIENCY_MAP = kind_name(PredictionKind.SALIENCY_MAP)
KINDS = (LOG_DENSITY, SALIENCY_MAP)
Protocol = Literal["raw", "benchmark"]
JUDD_JITTER = 1e-7  # size of the tie-breaking noise of MIT's / pysaliency's AUC-Judd


@dataclass(frozen=True)
class ImageScores:
    """One image's scores: its number of fixations and, per metric, (sum, count)."""

    n_fixations: int
    values: dict[str, tuple[float, float]]


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
    """Accumulates every registered saliency metric (:mod:`code.metrics.registry`) image by
    image, with pysaliency's averaging: per fixation (sum over fixations / number of fixations;
    a per-image AUC weighs the image's fixation count) or per image (mean of per-image values),
    as each record says. The state is a plain float64 tensor of sums and counts, so ranks
    combine by adding states (never by averaging averages).

    ``kind="log-density"``: predictions are natural-log densities; LL and IG (bits, against
    ``baseline_log_density``) are reported. With ``protocol="raw"`` every map-based metric scores
    the density exp(log p); ``"benchmark"`` scores the map the probabilistic protocol derives
    for each metric (:mod:`code.metrics.protocol`). ``kind="saliency-map"``: any finite map,
    scored as given (raw protocol only), no LL/IG.

    :meth:`score` only reads the evaluator, so threads may score images concurrently;
    :meth:`add` then sums the scores, in image order for results independent of the threads.
    Images without fixations are skipped.
    """

    def __init__(
        self,
        kind: Kind,
        protocol: Protocol,
        fixation_map_sigma: float,
        sim_optimisation: SimOptimisation,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if protocol not in ("raw", "benchmark"):
            raise ValueError(f"protocol must be 'raw' or 'benchmark', got {protocol!r}")
        if protocol == "benchmark" and kind != LOG_DENSITY:
            raise ValueError(
                f"the benchmark protocol derives maps from a density: needs kind {LOG_DENSITY!r}"
            )
        self.kind = kind
        self.protocol = protocol
        self.sigma = fixation_map_sigma
        self.sim_optimisation = sim_optimisation
        self.metrics = saliency_metrics()
        self._row = {metric.name: k for k, metric in enumerate(self.metrics)}
        # one [sum, count] row per metric, then [number of images, number of fixations]
        self._state = torch.zeros(len(self.metrics) + 1, 2, dtype=torch.float64)

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
        """Every metric of one image that its inputs allow, for :meth:`add`.

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
        if len(xs) == 0:
            return ImageScores(0, {})
        if self.kind == LOG_DENSITY:
            scored = M.density_from_log_density(pred, name)
        elif torch.isfinite(pred).all():
            scored = pred
        else:
            raise ValueError(f"{name}: saliency map contains NaN or inf")
        # pixel indices once for all metrics (they take integer coordinates as pixels)
        ys, xs = M.pixel_index(xs, ys, pred.device)
        image = ImageInputs(
            self._maps(pred, scored, shuffled_log_density),
            xs,
            ys,
            self.sigma,
            log_density=pred if self.kind == LOG_DENSITY else None,
            baseline_log_density=baseline_log_density,
            shuffled_xs=shuffled_xs,
            shuffled_ys=shuffled_ys,
            judd_jitter=judd_jitter,
            empirical_map=empirical_map,
        )
        available = image.available()
        values = {
            metric.name: (image.value(metric), image.n if metric.weighted else 1)
            for metric in self.metrics
            if metric.reads <= available
        }
        return ImageScores(image.n, values)

    def add(self, scores: ImageScores) -> dict[str, float]:
        """Add one image's :meth:`score` to the sums; returns the image's own values."""
        if not scores.n_fixations:
            return {}
        for metric, (total, count) in scores.values.items():
            self._state[self._row[metric]] += torch.tensor([total, count], dtype=torch.float64)
        self._state[-1] += torch.tensor([1.0, scores.n_fixations], dtype=torch.float64)
        return {metric: total / count for metric, (total, count) in scores.values.items()}

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
        """(metrics + 1, 2) float64: [sum, count] per metric in ``self.metrics`` order, then
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
        return {
            metric.name: (sums[i] / counts[i]).item()
            for i, metric in enumerate(self.metrics)
            if counts[i] > 0
        }
