"""Scoring saliency predictions against a data set's fixations, beside the baselines: the
library behind ``code.evaluate`` (maps made anywhere) and a trained model's evaluation.

Predictions are a folder with one map per stimulus at its original height × width, named
``<image stem>`` plus one of ``MAP_SUFFIXES``: ``.npy``, a ``.mat`` file holding one 2-D numeric
variable, or a grey-level image (``.png``, ``.jpg``: a saliency map, as other tools and the
MIT benchmark write them). The result is the ``result.json`` layout both commands write.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from code.data.gaze import GazeDataset, Stimulus
from code.metrics.baselines import (
    CrossValidatedCenterBias,
    LeaveOneSubjectOutGoldStandard,
    uniform_log_density,
)
from code.metrics.evaluator import ImageScores, JuddJitter, SaliencyEvaluator
from code.metrics.map_density import MapDensityFit
from code.metrics.protocol import ShuffledBaseline, SimOptimisation
from code.metrics.registry import saliency_metrics
from code.metrics.saliency import (
    ShuffledNonfixations,
    as_float64,
    empirical_saliency_map,
    log_likelihoods,
)
from code.metrics.uncertainty import bootstrap
from code.utils.parallel import ordered_thread_map
from code.utils.progress import ProgressBar


def stimulus_stem(stimulus: Stimulus) -> str:
    return stimulus.path.stem if stimulus.path is not None else Path(stimulus.id).stem


MAP_SUFFIXES = (".npy", ".mat", ".png", ".jpg", ".jpeg")
IMAGE_MAP_SUFFIXES = (".png", ".jpg", ".jpeg")  # saliency maps only: no log-density fits


def prediction_files(dataset: GazeDataset, directory: Path, extra_allowed: bool) -> list[Path]:
    """One map per stimulus (``<stem>`` + one of ``MAP_SUFFIXES``), in stimulus order; missing
    files and two maps for one stem are errors, and so are extra ones unless ``extra_allowed``
    (a subset of the data set is scored)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"predictions directory not found: {directory}")
    expected = [stimulus_stem(s) for s in dataset.stimuli]
    present: dict[str, list[Path]] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in MAP_SUFFIXES:
            present.setdefault(path.stem, []).append(path)
    doubled = [paths for paths in present.values() if len(paths) > 1]
    if doubled:
        raise ValueError(
            f"{directory}: two maps for one image, e.g. {[p.name for p in doubled[0]]}"
        )
    missing = [s for s in expected if s not in present]
    extra = (
        [] if extra_allowed else sorted(present[s][0].name for s in set(present) - set(expected))
    )
    if missing or extra:
        raise ValueError(
            f"{directory}: predictions do not match the {len(expected)} stimuli of {dataset.name}: "
            f"{len(missing)} missing (e.g. {missing[:5]}), {len(extra)} extra (e.g. {extra[:5]}); "
            f"maps are named <image stem> + one of {', '.join(MAP_SUFFIXES)}"
        )
    return [present[stem][0] for stem in expected]


def load_prediction(path: Path, stimulus: Stimulus) -> np.ndarray:
    try:
        array = _read_map(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read as a {path.suffix} map: {err}") from err
    if array.shape != stimulus.size:
        raise ValueError(
            f"{path}: shape {array.shape} but stimulus {stimulus.id!r} is "
            f"{stimulus.height}x{stimulus.width} (height x width)"
        )
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path}: dtype {array.dtype} is not numeric")
    return array


def _read_map(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path)
    if suffix == ".mat":
        variables = {
            name: value
            for name, value in scipy.io.loadmat(path).items()
            if not name.startswith("__") and np.ndim(value) == 2
        }
        if len(variables) != 1:
            raise ValueError(f"one 2-D variable expected, found {sorted(variables) or 'none'}")
        return next(iter(variables.values()))
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))  # grey levels; a colour map's luminance


def sim_optimisation(steps: int) -> SimOptimisation:
    """The SIM-optimal map search with ``steps`` steps (0: the blurred density is used)."""
    return SimOptimisation(
        steps=steps, fixation_count=100, batch_size=8, learning_rate=1e-3, seed=0
    )


def evaluate_saliency(
    dataset: GazeDataset,
    predictions: Path,
    kind: str,
    protocol: str,
    fixation_map_sigma: float,
    judd_jitter_seed: int | None,
    center_bias: CrossValidatedCenterBias,
    gold_standard: LeaveOneSubjectOutGoldStandard,
    sim_optimisation: SimOptimisation,
    device: torch.device,
    workers: int,
    extra_allowed: bool = False,
    map_density: MapDensityFit | None = None,
) -> dict:
    """Score the maps in ``predictions`` and the baselines; the ``result.json`` content.

    IG is in bits per fixation over the cross-validated centre bias (``center_bias``, fitted).
    Baselines are scored as log-densities under the same protocol; the gold standard, being a
    leave-one-subject-out model, reports LL and IG only. Images are scored on ``workers``
    threads and summed in data-set order, so the result does not depend on their number.
    ``extra_allowed``: ``dataset`` is a subset, and ``predictions`` may hold other images' maps.
    ``map_density`` (saliency maps only): the maps' density conversion fitted on training images
    (:func:`code.metrics.map_density.fit_map_density`); the model's LL and IG are then those of
    the converted maps, every other metric still the map's own, and ``map_density`` in the
    result holds the fitted parameters and every metric of the converted maps.
    """
    if map_density is not None and kind != "saliency-map":
        raise ValueError(f"a fitted map density converts saliency maps, not kind {kind!r}")
    files = prediction_files(dataset, predictions, extra_allowed)
    images = [f.name for f in files if f.suffix.lower() in IMAGE_MAP_SUFFIXES]
    if images and kind != "saliency-map":
        raise ValueError(
            f"{predictions}: {images[0]} is an image: it holds a saliency map, not a {kind} "
            "(score with --kind saliency-map)"
        )
    fix = dataset.fixations
    sizes = np.array([s.size for s in dataset.stimuli], dtype=np.int64)

    def evaluator(k: str) -> SaliencyEvaluator:
        return SaliencyEvaluator(k, protocol, fixation_map_sigma, sim_optimisation)

    evaluators = {
        "model": evaluator(kind),
        "uniform": evaluator("log-density"),
        "center_bias": evaluator("log-density"),
    }
    if map_density is not None:
        evaluators["map_density"] = evaluator("log-density")
    if all(s.true_log_density is not None for s in dataset.stimuli):
        evaluators["oracle"] = evaluator("log-density")  # generated data: the true density
    shuffled = (
        _shuffled_baselines(dataset, files, evaluators, center_bias, device)
        if protocol == "benchmark"
        else {}
    )
    gold_ll = gold_standard.log_likelihoods(dataset)
    nonfixations = ShuffledNonfixations(fix.x, fix.y, fix.image, sizes)
    jitter = None if judd_jitter_seed is None else JuddJitter(judd_jitter_seed)
    rows_of = fix.rows_by_image(len(dataset.stimuli))

    def images() -> Iterator[tuple]:
        """What each image needs that is drawn in data-set order (on the calling thread)."""
        for i, (stim, path) in enumerate(zip(dataset.stimuli, files, strict=True)):
            if len(rows_of[i]):
                judd = None if jitter is None else jitter.draw(stim.height, stim.width)
                yield i, stim, path, nonfixations.of(i), judd

    def score(image: tuple) -> tuple[dict[str, ImageScores], float]:
        """Every evaluator's scores of one image, and the gold standard's gain over the
        centre bias summed over its fixations."""
        i, stim, path, (sx, sy), judd_jitter = image
        labels = {"model": str(path), "map_density": f"{path} (fitted density)"}
        xs, ys = fix.x[rows_of[i]], fix.y[rows_of[i]]
        center = as_float64(center_bias.log_density(i, stim.height, stim.width), device)
        predictions_of = {
            "model": as_float64(load_prediction(path, stim), device),
            "uniform": as_float64(uniform_log_density(stim.height, stim.width), device),
            "center_bias": center,
        }
        if "oracle" in evaluators:
            predictions_of["oracle"] = as_float64(stim.true_log_density(), device)
        if map_density is not None:
            predictions_of["map_density"] = map_density.log_density(predictions_of["model"])
        # the same blurred fixation map serves every prediction of this image
        empirical = empirical_saliency_map(
            xs, ys, stim.height, stim.width, fixation_map_sigma, device
        )
        scores = {
            name: ev.score(
                predictions_of[name],
                xs,
                ys,
                name=labels.get(name, name),
                baseline_log_density=center,
                shuffled_xs=sx,
                shuffled_ys=sy,
                shuffled_log_density=shuffled[name].log_density_without(predictions_of[name])
                if shuffled
                else None,
                empirical_map=empirical,
                judd_jitter=judd_jitter,
            )
            for name, ev in evaluators.items()
        }
        center_ll = log_likelihoods(center, xs, ys).cpu().numpy()
        return scores, float((gold_ll[rows_of[i]] - center_ll).sum() / math.log(2))

    gold_gain_sum = 0.0
    scored_images = [i for i, rows in enumerate(rows_of) if len(rows)]
    per_image: dict[str, dict[str, list[float]]] = {name: {} for name in evaluators}
    scored = ordered_thread_map(score, images(), workers)
    for scores, gold_gain in ProgressBar(
        scored, total=len(scored_images), desc="images", unit="img"
    ):
        for name, image_scores in scores.items():
            for metric, value in evaluators[name].add(image_scores).items():
                per_image[name].setdefault(metric, []).append(value)
        gold_gain_sum += gold_gain
    n_fixations = [len(rows_of[i]) for i in scored_images]

    n_fix = evaluators["model"].n_fixations
    metrics = evaluators["model"].compute()
    settings = {
        "kind": kind,
        "protocol": protocol,
        "fixation_map_sigma": fixation_map_sigma,
        "judd_jitter_seed": judd_jitter_seed,
    }
    converted = {}
    if map_density is not None:
        converted = {
            "parameters": map_density.describe(),
            "metrics": evaluators["map_density"].compute(),
        }
        # the metrics that read a density are the converted maps'; the others the maps' own
        of_density = {m.name for m in saliency_metrics() if "log-density" in m.reads}
        for metric in of_density:
            per_image["model"][metric] = per_image["map_density"][metric]
        merged = {**metrics, **{k: v for k, v in converted["metrics"].items() if k in of_density}}
        metrics = {m.name: merged[m.name] for m in saliency_metrics() if m.name in merged}
        # how the maps were converted decides whether two results compare; the fitted values
        # are each model's own
        settings["map_density"] = {
            "options": converted["parameters"]["options"],
            "fit_images": map_density.training["images"],
            "fit_fixations": map_density.training["fixations"],
        }
    models = ("model", "map_density")
    baselines = {name: ev.compute() for name, ev in evaluators.items() if name not in models}
    baselines["gold_standard"] = {
        "LL": float(gold_ll.mean()),
        "IG": gold_gain_sum / n_fix,
    }
    return {
        "metrics": metrics,
        "n_images": evaluators["model"].n_images,
        "n_fixations": n_fix,
        "baseline": {
            "information_gain_over": "center_bias",
            "center_bias": {
                "bandwidth": center_bias.bandwidth,
                "uniform_weight": center_bias.uniform_weight,
                "folds": center_bias.folds,
            },
            "gold_standard": {
                "bandwidth": gold_standard.bandwidth,
                "uniform_weight": gold_standard.uniform_weight,
            },
        },
        "baselines": baselines,
        "settings": settings,
        **({"map_density": converted} if converted else {}),
        "dataset": dataset.name,
        "uncertainty": {name: bootstrap(values, n_fixations) for name, values in per_image.items()},
        "per_image": {
            "image": [dataset.stimuli[i].id for i in scored_images],
            "n_fixations": n_fixations,
            **per_image,
        },
    }


def _shuffled_baselines(
    dataset, files, evaluators, center_bias, device
) -> dict[str, ShuffledBaseline]:
    """First pass of the benchmark protocol: each model's mean density over all images."""
    common = {s.size for s in dataset.stimuli}
    compute_size = next(iter(common)) if len(common) == 1 else (500, 500)
    result = {name: ShuffledBaseline(compute_size) for name in evaluators}
    for i, (stim, path) in enumerate(
        ProgressBar(list(zip(dataset.stimuli, files, strict=True)), desc="shuffled baseline")
    ):
        result["model"].add(as_float64(load_prediction(path, stim), device))
        result["uniform"].add(as_float64(uniform_log_density(stim.height, stim.width), device))
        result["center_bias"].add(
            as_float64(center_bias.log_density(i, stim.height, stim.width), device)
        )
        if "oracle" in result:
            result["oracle"].add(as_float64(stim.true_log_density(), device))
    return result


def format_table(result: dict) -> str:
    """The model's metrics with their bootstrap s.e. and 95 % interval (when the result has
    them), beside the baselines."""
    columns = {"model": result["metrics"], **result["baselines"]}
    spread = result.get("uncertainty", {}).get("model", {})
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
            se = "" if s is None else f"{s['se']:.5f}"
            interval = "" if s is None else f"[{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]"
            text.insert(1, f"{se:>10}{interval:>22}")
        lines.append(f"{metric:<10}" + "".join(text))
    lines.append(
        f"{result['n_images']} images, {result['n_fixations']} fixations; "
        f"IG in bits/fixation over the {result['baseline']['information_gain_over']}"
        + ("; s.e. and 95% CI: bootstrap over images" if spread else "")
    )
    return "\n".join(lines)
