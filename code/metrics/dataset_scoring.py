"""Scoring saliency predictions against a data set's fixations, beside the baselines: the
library behind ``code.evaluate`` (maps made anywhere, :mod:`code.metrics.predictions`) and a
trained model's evaluation. The result is the ``result.json`` layout both commands write.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from code.data.gaze import GazeDataset, Stimulus
from code.metrics.baselines import EvaluationBaselines
from code.metrics.evaluator import (
    LOG_DENSITY,
    SALIENCY_MAP,
    ImageScores,
    JuddJitter,
    Kind,
    Protocol,
    SaliencyEvaluator,
)
from code.metrics.predictions import IMAGE_MAP_SUFFIXES, load_prediction, prediction_files
from code.metrics.protocol import ShuffledBaseline, SimOptimisation
from code.metrics.registry import saliency_metrics
from code.metrics.report import Interval, PerImage, SaliencyReport
from code.metrics.saliency import (
    ShuffledNonfixations,
    as_float64,
    empirical_saliency_map,
    log_likelihoods,
)
from code.metrics.uncertainty import bootstrap
from code.utils.parallel import ordered_thread_map
from code.utils.progress import ProgressBar


def sim_optimisation(steps: int) -> SimOptimisation:
    """The SIM-optimal map search with ``steps`` steps (0: the blurred density is used)."""
    return SimOptimisation(
        steps=steps, fixation_count=100, batch_size=8, learning_rate=1e-3, seed=0
    )


@dataclass(frozen=True)
class SaliencySettings:
    """How predictions are scored: their kind, the protocol, the empirical maps' σ (pixels),
    AUC-Judd's jitter seed (None: no jitter) and the SIM-optimal map search."""

    kind: Kind
    protocol: Protocol
    fixation_map_sigma: float
    judd_jitter_seed: int | None
    sim_optimisation: SimOptimisation

    def evaluator(self, kind: Kind) -> SaliencyEvaluator:
        return SaliencyEvaluator(
            kind, self.protocol, self.fixation_map_sigma, self.sim_optimisation
        )


def evaluate_saliency(
    dataset: GazeDataset,
    predictions: Path,
    settings: SaliencySettings,
    baselines: EvaluationBaselines,
    device: torch.device,
    workers: int,
    extra_allowed: bool = False,
) -> SaliencyReport:
    """Score the maps in ``predictions`` and the baselines; the ``result.json`` content.

    IG is in bits per fixation over the cross-validated centre bias of ``baselines``. Baselines
    are scored as log-densities under the same protocol; the gold standard, being a
    leave-one-subject-out model, reports LL and IG only. Images are scored on ``workers``
    threads and summed in data-set order, so the result does not depend on their number.
    ``extra_allowed``: ``dataset`` is a subset, and ``predictions`` may hold other images' maps.
    A fitted map density among the baselines (saliency maps only: ``map_density``,
    :func:`code.metrics.map_density.fit_map_density`) gives the model's LL and IG: those of
    the converted maps, every other metric still the map's own; ``map_density`` in the result
    holds the fitted parameters and every metric of the converted maps.
    """
    files = _checked_files(dataset, predictions, settings.kind, baselines, extra_allowed)
    scoring = _DatasetScoring(dataset, files, settings, baselines, device)
    scoring.run(workers)
    return scoring.result()


def _checked_files(
    dataset: GazeDataset,
    predictions: Path,
    kind: Kind,
    baselines: EvaluationBaselines,
    extra_allowed: bool,
) -> list[Path]:
    if "map_density" in baselines.scored and kind != SALIENCY_MAP:
        raise ValueError(f"a fitted map density converts saliency maps, not kind {kind!r}")
    files = prediction_files(dataset, predictions, extra_allowed)
    images = [f.name for f in files if f.suffix.lower() in IMAGE_MAP_SUFFIXES]
    if images and kind != SALIENCY_MAP:
        raise ValueError(
            f"{predictions}: {images[0]} is an image: it holds a saliency map, not a {kind} "
            f"(score with --kind {SALIENCY_MAP})"
        )
    return files


class _DatasetScoring:
    """One evaluation: the model's maps and every baseline, image by image."""

    def __init__(
        self,
        dataset: GazeDataset,
        files: list[Path],
        settings: SaliencySettings,
        baselines: EvaluationBaselines,
        device: torch.device,
    ) -> None:
        self.dataset, self.files, self.settings = dataset, files, settings
        self.baselines, self.device = baselines, device
        self.evaluators = {"model": settings.evaluator(settings.kind)}
        self.evaluators.update({name: settings.evaluator(LOG_DENSITY) for name in baselines.scored})
        fix = dataset.fixations
        self.rows_of = fix.rows_by_image(len(dataset.stimuli))
        self.scored_images = [i for i, rows in enumerate(self.rows_of) if len(rows)]
        self.shuffled = self._shuffled_baselines() if settings.protocol == "benchmark" else {}
        self.gold_ll = baselines.gold_standard.log_likelihoods(dataset)
        self.per_image: dict[str, dict[str, list[float]]] = {name: {} for name in self.evaluators}
        self.gold_gain_sum = 0.0

    def predictions(self, i: int, stimulus: Stimulus, path: Path) -> dict[str, torch.Tensor]:
        """The model's map of image ``i`` and each baseline's log-density."""
        model = as_float64(load_prediction(path, stimulus), self.device)
        result = {"model": model}
        for name, baseline in self.baselines.scored.items():
            result[name] = as_float64(baseline.log_density(i, stimulus, model), self.device)
        return result

    def _shuffled_baselines(self) -> dict[str, ShuffledBaseline]:
        """First pass of the benchmark protocol: each model's mean density over all images."""
        common = {s.size for s in self.dataset.stimuli}
        compute_size = next(iter(common)) if len(common) == 1 else (500, 500)
        result = {name: ShuffledBaseline(compute_size) for name in self.evaluators}
        pairs = list(zip(self.dataset.stimuli, self.files, strict=True))
        for i, (stimulus, path) in enumerate(ProgressBar(pairs, desc="shuffled baseline")):
            for name, log_density in self.predictions(i, stimulus, path).items():
                result[name].add(log_density)
        return result

    def images(self) -> Iterator[tuple]:
        """What each image needs that is drawn in data-set order (on the calling thread)."""
        fix = self.dataset.fixations
        sizes = np.array([s.size for s in self.dataset.stimuli], dtype=np.int64)
        nonfixations = ShuffledNonfixations(fix.x, fix.y, fix.image, sizes)
        seed = self.settings.judd_jitter_seed
        jitter = None if seed is None else JuddJitter(seed)
        for i in self.scored_images:
            stimulus = self.dataset.stimuli[i]
            judd = None if jitter is None else jitter.draw(stimulus.height, stimulus.width)
            yield i, stimulus, self.files[i], nonfixations.of(i), judd

    def score(self, image: tuple) -> tuple[dict[str, ImageScores], float]:
        """Every evaluator's scores of one image, and the gold standard's gain over the
        centre bias summed over its fixations."""
        i, stimulus, path, (sx, sy), judd_jitter = image
        fix = self.dataset.fixations
        xs, ys = fix.x[self.rows_of[i]], fix.y[self.rows_of[i]]
        predictions = self.predictions(i, stimulus, path)
        center = predictions["center_bias"]
        # the same blurred fixation map serves every prediction of this image
        empirical = empirical_saliency_map(
            xs, ys, *stimulus.size, self.settings.fixation_map_sigma, self.device
        )
        scores = {
            name: evaluator.score(
                predictions[name],
                xs,
                ys,
                name=self._label(name, path),
                baseline_log_density=center,
                shuffled_xs=sx,
                shuffled_ys=sy,
                shuffled_log_density=(
                    self.shuffled[name].log_density_without(predictions[name])
                    if self.shuffled
                    else None
                ),
                empirical_map=empirical,
                judd_jitter=judd_jitter,
            )
            for name, evaluator in self.evaluators.items()
        }
        center_ll = log_likelihoods(center, xs, ys).cpu().numpy()
        return scores, float((self.gold_ll[self.rows_of[i]] - center_ll).sum() / math.log(2))

    def _label(self, name: str, path: Path) -> str:
        return str(path) if name == "model" else self.baselines.scored[name].label(name, str(path))

    def run(self, workers: int) -> None:
        """Score every image with fixations on ``workers`` threads, summed in image order."""
        scored = ordered_thread_map(self.score, self.images(), workers)
        progress = ProgressBar(scored, total=len(self.scored_images), desc="images", unit="img")
        for scores, gold_gain in progress:
            for name, image_scores in scores.items():
                for metric, value in self.evaluators[name].add(image_scores).items():
                    self.per_image[name].setdefault(metric, []).append(value)
            self.gold_gain_sum += gold_gain

    def result(self) -> SaliencyReport:
        """Every number of the evaluation."""
        model = self.evaluators["model"]
        metrics, settings = model.compute(), self._settings()
        converted = None
        if "map_density" in self.evaluators:
            metrics, converted = self._converted_maps(metrics)
            settings["map_density"] = self._map_density_settings(converted)
        n_fixations = [len(self.rows_of[i]) for i in self.scored_images]
        return SaliencyReport(
            metrics=metrics,
            n_images=model.n_images,
            n_fixations=model.n_fixations,
            baseline=self._baseline_settings(),
            baselines=self._baseline_metrics(),
            settings=settings,
            dataset=self.dataset.name,
            map_density=converted,
            uncertainty={
                name: {m: Interval.of(i) for m, i in bootstrap(values, n_fixations).items()}
                for name, values in self.per_image.items()
            },
            per_image=PerImage(
                [self.dataset.stimuli[i].id for i in self.scored_images],
                n_fixations,
                self.per_image,
            ),
        )

    def _settings(self) -> dict:
        return {
            "kind": self.settings.kind,
            "protocol": self.settings.protocol,
            "fixation_map_sigma": self.settings.fixation_map_sigma,
            "judd_jitter_seed": self.settings.judd_jitter_seed,
        }

    def _converted_maps(self, metrics: dict[str, float]) -> tuple[dict, dict]:
        """The model's metrics with the converted maps' LL and IG, and the conversion."""
        fit = self.baselines.scored["map_density"].fit
        converted = {
            "parameters": fit.describe(),
            "metrics": self.evaluators["map_density"].compute(),
        }
        # the metrics that read a density are the converted maps'; the others the maps' own
        of_density = {m.name for m in saliency_metrics() if "log-density" in m.reads}
        for metric in of_density:
            self.per_image["model"][metric] = self.per_image["map_density"][metric]
        merged = {**metrics, **{k: v for k, v in converted["metrics"].items() if k in of_density}}
        return {m.name: merged[m.name] for m in saliency_metrics() if m.name in merged}, converted

    def _map_density_settings(self, converted: dict) -> dict:
        # how the maps were converted decides whether two results compare; the fitted values
        # are each model's own
        fit = self.baselines.scored["map_density"].fit
        return {
            "options": converted["parameters"]["options"],
            "fit_images": fit.training["images"],
            "fit_fixations": fit.training["fixations"],
        }

    def _baseline_settings(self) -> dict:
        center_bias, gold = self.baselines.center_bias, self.baselines.gold_standard
        return {
            "information_gain_over": "center_bias",
            "center_bias": {
                "bandwidth": center_bias.bandwidth,
                "uniform_weight": center_bias.uniform_weight,
                "folds": center_bias.folds,
            },
            "gold_standard": {
                "bandwidth": gold.bandwidth,
                "uniform_weight": gold.uniform_weight,
            },
        }

    def _baseline_metrics(self) -> dict[str, dict[str, float]]:
        result = {
            name: self.evaluators[name].compute()
            for name, baseline in self.baselines.scored.items()
            if baseline.reported
        }
        result["gold_standard"] = {
            "LL": float(self.gold_ll.mean()),
            "IG": self.gold_gain_sum / self.evaluators["model"].n_fixations,
        }
        return result


def format_table(report: SaliencyReport) -> str:
    """The model's metrics with their bootstrap s.e. and 95 % interval (when the report has
    them), beside the baselines."""
    columns = {"model": report.metrics, **report.baselines}
    spread = report.uncertainty.get("model", {})
    extra = f"{'± s.e.':>10}{'95% CI':>22}" if spread else ""
    lines = [
        f"{'metric':<10}{'model':>15}{extra}" + "".join(f"{c:>15}" for c in columns if c != "model")
    ]
    for metric in (m.name for m in saliency_metrics()):
        cells = [columns[c].get(metric) for c in columns]
        if all(v is None for v in cells):
            continue
        text = [f"{'—' if v is None else f'{v:.5f}':>15}" for v in cells]
        if spread:
            s = spread.get(metric)
            se = "" if s is None else f"{s.se:.5f}"
            interval = "" if s is None else f"[{s.ci95[0]:.4f}, {s.ci95[1]:.4f}]"
            text.insert(1, f"{se:>10}{interval:>22}")
        lines.append(f"{metric:<10}" + "".join(text))
    lines.append(
        f"{report.n_images} images, {report.n_fixations} fixations; "
        f"IG in bits/fixation over the {report.baseline['information_gain_over']}"
        + ("; s.e. and 95% CI: bootstrap over images" if spread else "")
    )
    return "\n".join(lines)
