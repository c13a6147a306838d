"""Scanpath metrics: string edit distance, sequence score, ScanMatch, MultiMatch, conditional
per-fixation scores of probabilistic scanpath models, and the human agreement ceiling.

Fixations are turned into letters by a regular spatial grid: an image of W × H pixels is cut
into ``x_bins`` × ``y_bins`` cells. Fixation (x, y) lies in pixel (r, c) = (⌊y⌋, ⌊x⌋) (clamped
to the image), which belongs to cell (⌊r·y_bins/H⌋, ⌊c·x_bins/W⌋), numbered row by row
(row·x_bins + column): the ScanMatch toolbox's grid mask (``ScanMatch_GridMask``), which labels
pixels, not continuous positions; computed in integers, so no cell boundary depends on rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import combinations, permutations
from pathlib import Path

import numpy as np
import torch

from code.data.gaze import GazeDataset
from code.data.loaders.csv_layout import read_fixation_table
from code.metrics import saliency as M
from code.metrics.protocol import raw_maps
from code.metrics.registry import (
    ImageInputs,
    Metric,
    register,
    saliency_metrics,
    scanpath_metrics,
)
from code.metrics.uncertainty import bootstrap
from code.utils.logging import get_logger
from code.utils.progress import ProgressBar


@dataclass(frozen=True)
class Grid:
    """The spatial grid that turns fixations into letters (see the module docstring)."""

    x_bins: int
    y_bins: int

    def cells(self, xs: np.ndarray, ys: np.ndarray, height: int, width: int) -> np.ndarray:
        column = np.clip(np.floor(np.asarray(xs)).astype(np.int64), 0, width - 1)
        row = np.clip(np.floor(np.asarray(ys)).astype(np.int64), 0, height - 1)
        return (row * self.y_bins // height) * self.x_bins + column * self.x_bins // width


def string_edit_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Levenshtein distance between two cell sequences (insert, delete, substitute cost 1)."""
    return int(-needleman_wunsch(a, b, -(a[:, None] != b[None, :]).astype(np.float64), gap=-1.0))


def sequence_score(a: np.ndarray, b: np.ndarray) -> float:
    """1 − edit distance / length of the longer sequence: 1 for identical strings, 0 for
    strings with nothing in common."""
    return 1.0 - string_edit_distance(a, b) / max(len(a), len(b))


def needleman_wunsch(a: np.ndarray, b: np.ndarray, substitution: np.ndarray, gap: float) -> float:
    """Best global alignment score; ``substitution[i, j]`` scores aligning a[i] with b[j].

    F[i, j] = max(F[i−1, j−1] + s_ij, F[i−1, j] + gap, F[i, j−1] + gap) with F[i, 0] = i·gap,
    F[0, j] = j·gap. A row's left-to-right dependency is a running maximum,
    F[i, j] = j·gap + max_{k≤j}(c_k − k·gap), so each row is one vectorised step.
    """
    n = substitution.shape[1]
    offsets = gap * np.arange(n + 1)
    row = offsets.copy()
    for i in range(substitution.shape[0]):
        candidates = np.empty(n + 1)
        candidates[0] = (i + 1) * gap
        candidates[1:] = np.maximum(row[:-1] + substitution[i], row[1:] + gap)
        row = offsets + np.maximum.accumulate(candidates - offsets)
    return float(row[-1])


@dataclass(frozen=True)
class ScanMatchParams:
    """ScanMatch (Cristino, Mathôt, Theeuwes & Gilchrist 2010) parameters.

    ``threshold`` (grid cells): substitution score is threshold − Euclidean distance between the
    two cells' centres, so cells closer than the threshold score positively (the toolbox
    suggests 2·std(saccade amplitude) / cell width). ``gap``: score of an insertion/deletion
    (toolbox default 0). ``temporal_bin_ms``: each fixation is repeated round(duration / bin)
    times; 0 disables temporal binning.
    """

    grid: Grid
    threshold: float
    gap: float
    temporal_bin_ms: float

    def substitution_matrix(self) -> np.ndarray:
        rows, cols = np.divmod(np.arange(self.grid.x_bins * self.grid.y_bins), self.grid.x_bins)
        distance = np.hypot(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :])
        # the toolbox's |d − max d| − (max d − threshold), i.e. threshold − d
        return np.abs(distance - distance.max()) - (distance.max() - self.threshold)


def scanmatch(
    a: tuple[np.ndarray, np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray, np.ndarray],
    height: int,
    width: int,
    params: ScanMatchParams,
) -> float:
    """ScanMatch similarity of scanpaths ``a`` and ``b``, each (xs, ys, durations_ms).

    Fixations become grid cells, temporally binned if asked; the Needleman–Wunsch score with
    the distance-based substitution matrix is divided by max(substitution) × the longer
    sequence's length, as the MATLAB toolbox's ``ScanMatch``.
    """
    seqs = []
    for xs, ys, durations in (a, b):
        cells = params.grid.cells(xs, ys, height, width)
        if params.temporal_bin_ms > 0:
            # MATLAB's round: halves away from zero (durations are positive)
            cells = np.repeat(
                cells,
                np.floor(np.asarray(durations) / params.temporal_bin_ms + 0.5).astype(np.int64),
            )
        seqs.append(cells)
    matrix = params.substitution_matrix()
    score = needleman_wunsch(seqs[0], seqs[1], matrix[np.ix_(seqs[0], seqs[1])], params.gap)
    return score / (matrix.max() * max(len(seqs[0]), len(seqs[1])))


def multimatch(
    a: tuple[np.ndarray, np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray, np.ndarray],
    height: int,
    width: int,
) -> np.ndarray:
    """MultiMatch (Jarodzka et al. 2010; Dewhurst et al. 2012) via ``multimatch-gaze``, without
    grouping: vector, direction, length, position and duration similarities in [0, 1], in that
    order. Scanpaths with fewer than 3 fixations give NaN (the package cannot compare them).
    Durations in ms."""
    import multimatch_gaze

    def as_record(xs, ys, durations):
        rec = np.recarray(
            (len(xs),), dtype=[("start_x", "f8"), ("start_y", "f8"), ("duration", "f8")]
        )
        rec.start_x, rec.start_y, rec.duration = xs, ys, np.asarray(durations) / 1000.0
        return rec

    values = np.ravel(
        multimatch_gaze.docomparison(as_record(*a), as_record(*b), screensize=[width, height])
    ).astype(float)
    return values if len(values) == 5 else np.full(5, math.nan)


Scanpath = tuple[np.ndarray, np.ndarray, np.ndarray]  # xs, ys, durations (ms)


@dataclass
class PairInputs:
    """A (predicted, human) scanpath pair on one image, as every scanpath metric reads it; the
    grid cells and MultiMatch's five measures are computed once, when first asked."""

    a: Scanpath
    b: Scanpath
    height: int
    width: int
    params: ScanMatchParams

    @cached_property
    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        grid = self.params.grid
        return tuple(grid.cells(p[0], p[1], self.height, self.width) for p in (self.a, self.b))

    @cached_property
    def multimatch(self) -> np.ndarray:
        return multimatch(self.a, self.b, self.height, self.width)


register(Metric(
    "ScanMatch", "pair", True,
    function=lambda p: scanmatch(p.a, p.b, p.height, p.width, p.params),
))  # fmt: skip
for _k, _measure in enumerate(("vector", "direction", "length", "position", "duration")):
    register(Metric(
        f"MM_{_measure}", "pair", True,
        reads=frozenset({"durations"}) if _measure == "duration" else frozenset(),
        function=lambda p, k=_k: float(p.multimatch[k]),
    ))  # fmt: skip
register(Metric(
    "string_edit_distance", "pair", False,
    function=lambda p: float(string_edit_distance(*p.cells)),
))  # fmt: skip
register(Metric("sequence_score", "pair", True, function=lambda p: sequence_score(*p.cells)))


# --------------------------------------------------------------------------- probabilistic


CONDITIONAL_INPUTS = frozenset({"log-density", "baseline"})  # what a conditional density has


class ConditionalScanpathEvaluator:
    """Per-fixation scores of a probabilistic scanpath model, each fixation given its history.

    ``update`` takes, for the n fixations of scanpaths, the model's conditional log-densities
    ``(n, H, W)`` — density of fixation k given fixations < k — and the fixations themselves.
    Every registered metric averaged per fixation that reads nothing but the density and the
    baseline is scored (LL in nats, IG in bits over the baseline, NSS, AUC with all pixels as
    negatives), each fixation an image of one fixation.
    """

    def __init__(self) -> None:
        self.metrics = [
            m
            for m in saliency_metrics()
            if m.averaging == "fixation" and m.reads <= CONDITIONAL_INPUTS
        ]
        self._state = torch.zeros(len(self.metrics), 2, dtype=torch.float64)

    def update(
        self,
        conditional_log_densities: M.ArrayLike,
        xs: M.ArrayLike,
        ys: M.ArrayLike,
        baseline_log_density: M.ArrayLike,
    ) -> None:
        logps = M.as_float64(conditional_log_densities)
        rows, cols = M.pixel_index(xs, ys, logps.device)
        for k in range(len(logps)):
            name = f"conditional log-density of fixation {k}"
            image = ImageInputs(
                raw_maps(M.density_from_log_density(logps[k], name)),
                cols[k : k + 1],
                rows[k : k + 1],
                sigma=None,
                log_density=logps[k],
                baseline_log_density=baseline_log_density,
            )
            for i, metric in enumerate(self.metrics):
                self._state[i] += torch.tensor([image.value(metric), 1.0], dtype=torch.float64)

    def state(self) -> torch.Tensor:
        """(metrics, 2) float64 [sum, count] per metric in ``self.metrics`` order; merge by
        adding."""
        return self._state.clone()

    def merge(self, state: torch.Tensor) -> None:
        self._state += state.to(self._state)

    def compute(self) -> dict[str, float]:
        sums, counts = self._state[:, 0], self._state[:, 1]
        return {
            m.name: (sums[i] / counts[i]).item()
            for i, m in enumerate(self.metrics)
            if counts[i] > 0
        }


# --------------------------------------------------------------------------- data sets


def scanpaths_by_image(dataset: GazeDataset) -> dict[int, dict[int, Scanpath]]:
    """image -> subject -> its scanpath, fixations in temporal order."""
    fix = dataset.fixations
    result: dict[int, dict[int, Scanpath]] = {}
    order = np.lexsort((fix.index, fix.train))
    for train in np.unique(fix.train):
        rows = order[fix.train[order] == train]
        result.setdefault(int(fix.image[rows[0]]), {})[int(fix.subject[rows[0]])] = (
            fix.x[rows],
            fix.y[rows],
            fix.duration_ms[rows],
        )
    return result


def compare(
    a: Scanpath,
    b: Scanpath,
    height: int,
    width: int,
    params: ScanMatchParams,
    durations: bool = True,
) -> dict[str, float]:
    """Every registered scanpath metric for one pair (without those reading durations unless
    ``durations``)."""
    pair = PairInputs(a, b, height, width, params)
    available = frozenset({"durations"} if durations else ())
    return {m.name: m.function(pair) for m in scanpath_metrics() if m.reads <= available}


def _mean(rows: list[dict[str, float]], metrics: Sequence[str] | None = None) -> dict[str, float]:
    """Each metric's mean over ``rows`` (NaNs left out); ``metrics``: those of the first row."""
    if not rows:
        return {}
    return {k: float(np.nanmean([r[k] for r in rows])) for k in metrics or rows[0]}


def per_image_means(
    rows_of: dict[int, list[dict[str, float]]], metrics: Sequence[str]
) -> dict[str, list[float]]:
    """Per metric, each image's mean over its scanpath pairs (NaNs left out), in ``rows_of``'s
    order; images without a pair are left out."""
    means = [_mean(rows, metrics) for rows in rows_of.values() if rows]
    return {metric: [m[metric] for m in means] for metric in metrics}


def human_pairs(
    dataset: GazeDataset, params: ScanMatchParams, images: set[int], length: int | None = None
) -> dict[int, list[dict[str, float]]]:
    """Per image of ``images``: human scanpaths compared with each other. ``length`` None: every
    unordered pair of whole scanpaths once (the metrics are symmetric except MultiMatch's
    alignment, which is symmetric in its distances). ``length`` L: each viewer's first L
    fixations against every other viewer's whole scanpath (ordered pairs), as a model's
    scanpaths of L fixations are scored against the viewers', so the two compare."""
    by_image = scanpaths_by_image(dataset)
    pairs = {}
    for image in ProgressBar(sorted(images & set(by_image)), desc="human ceiling", unit="img"):
        stim = dataset.stimuli[image]
        scanpaths = list(by_image[image].values())
        if length is None:
            ordered = combinations(scanpaths, 2)
        else:
            ordered = ((tuple(x[:length] for x in a), b) for a, b in permutations(scanpaths, 2))
        pairs[image] = [compare(a, b, stim.height, stim.width, params) for a, b in ordered]
    return pairs


def evaluate_scanpaths(dataset: GazeDataset, predictions: Path, params: ScanMatchParams) -> dict:
    """``score_scanpaths`` beside the human ceiling on the same images (those with predicted
    and human scanpaths): each viewer's first L fixations, L the longest predicted scanpath,
    against the other viewers' scanpaths; each with its bootstrap s.e. and 95 % interval over
    images (each image weighted by its number of scanpath pairs, as the means are)."""
    result = score_scanpaths(dataset, predictions, params)
    scored = set(result["per_image"]["image"])
    images = {i for i, stimulus in enumerate(dataset.stimuli) if stimulus.id in scored}
    # the humans scored as the model was (without temporal bins where it has no durations)
    params = replace(params, temporal_bin_ms=result["temporal_bin_ms"])
    pairs = human_pairs(dataset, params, images, result["length"])
    metrics = list(result["metrics"])  # without durations' measures where the model has none
    n_ceiling = [len(rows) for rows in pairs.values() if rows]
    per_image = result["per_image"]
    return {
        **result,
        "human_ceiling": _mean([row for rows in pairs.values() for row in rows], metrics),
        "intervals": {
            "model": bootstrap(per_image["model"], per_image["n_pairs"]),
            "human_ceiling": bootstrap(per_image_means(pairs, metrics), n_ceiling),
        },
    }


def score_scanpaths(dataset: GazeDataset, predictions: Path, params: ScanMatchParams) -> dict:
    """Compare each predicted scanpath with every human scanpath of its image (mean over
    pairs). ``predictions``: a table in the generic ``fixations.csv`` layout
    (:mod:`code.data.loaders.csv_layout`, checked like it); ``image`` is the stimulus file name
    or stem, ``subject`` may name the model that made the scanpath."""
    table = read_fixation_table(predictions, dataset.stimuli, str(predictions))
    # Models that say where, not how long (e.g. code.predict's samples): scored without
    # durations, which only ScanMatch's temporal bins and MultiMatch's duration need.
    timed = bool(np.isfinite(table.fixations.duration_ms).all())
    if not timed and params.temporal_bin_ms > 0:
        get_logger().warning(
            "%s: scanpaths without durations (duration_ms empty): ScanMatch without temporal "
            "bins (as SCANPATH.TEMPORAL_BIN_MS 0) and MultiMatch without its duration measure, for "
            "the model and the human ceiling alike",
            predictions,
        )
        params = replace(params, temporal_bin_ms=0.0)
    predicted = scanpaths_by_image(table)
    humans = scanpaths_by_image(dataset)
    rows_of: dict[int, list[dict[str, float]]] = {}
    for image, by_model in sorted(predicted.items()):
        stim = dataset.stimuli[image]
        for scanpath in by_model.values():
            for human in humans.get(image, {}).values():
                row = compare(scanpath, human, stim.height, stim.width, params, timed)
                rows_of.setdefault(image, []).append(row)
    rows = [row for image_rows in rows_of.values() for row in image_rows]
    metrics = _mean(rows)
    return {
        "metrics": metrics,
        "n_pairs": len(rows),
        "n_images": len(predicted),
        "length": max(len(xs) for by_model in predicted.values() for xs, _, _ in by_model.values()),
        "durations": timed,
        "temporal_bin_ms": params.temporal_bin_ms,
        "per_image": {  # each image's mean over its (predicted, human) pairs
            "image": [dataset.stimuli[image].id for image in rows_of],
            "n_pairs": [len(image_rows) for image_rows in rows_of.values()],
            "model": per_image_means(rows_of, list(metrics)),
        },
    }


def format_scanpath_table(result: dict) -> str:
    """The model's and the human ceiling's value of every metric, each with its bootstrap s.e.
    and 95 % interval over images."""
    lines = [
        f"{result['n_images']} images, {result['n_pairs']} (predicted, human) scanpath pairs; "
        f"human ceiling: each viewer's first {result['length']} fixations (the longest "
        "predicted scanpath) against the other viewers'",
        f"{'metric':<22}{'model':>10}{'s.e.':>8}{'95% interval':>20}"
        f"{'humans':>10}{'s.e.':>8}{'95% interval':>20}",
    ]
    for metric, value in result["metrics"].items():
        cells = f"{metric:<22}"
        for name, mean in (("model", value), ("human_ceiling", result["human_ceiling"][metric])):
            interval = result["intervals"][name][metric]
            low, high = interval["ci95"]
            cells += f"{mean:>10.4f}{interval['se']:>8.4f}{f'[{low:.4f}, {high:.4f}]':>20}"
        lines.append(cells)
    return "\n".join(lines)
