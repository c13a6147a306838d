"""Score a trained log-density model exactly as ``code.evaluate`` scores anyone's predictions.

The model's predictions for the evaluation images are written as ``<stimulus stem>.npy``
log-densities at each stimulus' original size (each rank its share), then rank 0 scores that
folder with ``code.metrics.dataset_scoring.evaluate_saliency`` — the same metric code, baselines and
JSON layout as for predictions made elsewhere.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from code.data.gaze import GazeDataset, Stimulus
from code.data.samples import ordered_scanpaths
from code.metrics.baselines import (
    CenterBiasBaseline,
    CrossValidatedCenterBias,
    EvaluationBaselines,
    LeaveOneSubjectOutGoldStandard,
    UniformBaseline,
)
from code.metrics.dataset_scoring import SaliencySettings, evaluate_saliency, sim_optimisation
from code.metrics.evaluator import kind_name
from code.metrics.map_density import MapDensityFit
from code.metrics.predictions import stimulus_stem
from code.metrics.scanpath import ConditionalScanpathEvaluator
from code.models.shapes import PredictionKind
from code.utils import distributed as dist
from code.utils.parallel import available_cpus
from code.utils.progress import ProgressBar


def to_original_size(log_density: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (..., H, W) log-densities to ``size`` and renormalise each over the new pixels."""
    if tuple(log_density.shape[-2:]) == size:
        return log_density
    lead, hw = log_density.shape[:-2], log_density.shape[-2:]
    resized = F.interpolate(
        log_density.reshape(-1, 1, *hw).float(), size=size, mode="bilinear", align_corners=False
    )
    return torch.log_softmax(resized.flatten(1), dim=1).view(*lead, *size)


def map_to_original_size(saliency: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (..., H, W) saliency maps to ``size`` bicubically (maps need no renormalising)."""
    if tuple(saliency.shape[-2:]) == size:
        return saliency
    lead, hw = saliency.shape[:-2], saliency.shape[-2:]
    resized = F.interpolate(
        saliency.reshape(-1, 1, *hw).float(), size=size, mode="bicubic", align_corners=False
    )
    return resized.view(*lead, *size)


# How each kind of prediction that code.evaluate scores is taken to the original size.
ORIGINAL_SIZE = {
    PredictionKind.LOG_DENSITY: to_original_size,
    PredictionKind.SALIENCY_MAP: map_to_original_size,
}


@torch.no_grad()
def write_predictions(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    dataset: GazeDataset,
    device: torch.device,
    folder: Path,
) -> None:
    """Save this rank's predictions (log-densities or saliency maps: ``model.prediction``) as
    float32 ``.npy`` at original size."""
    folder.mkdir(parents=True, exist_ok=True)
    resize = ORIGINAL_SIZE[model.prediction]
    model.eval()
    for batch in ProgressBar(loader, desc="predict", disable=not dist.is_main(), leave=False):
        prediction, _ = model(batch.to(device))
        for item, index in enumerate(batch.image_index.tolist()):
            stimulus = dataset.stimuli[index]
            resized = resize(prediction[item], stimulus.size)
            np.save(folder / f"{stimulus_stem(stimulus)}.npy", resized.cpu().numpy())


def centre_bias_model(cfg: CfgNode) -> CrossValidatedCenterBias:
    """The centre bias IG is measured over, unfitted: DATA.CENTERBIAS's kernel, cross-validated
    over EVAL.CENTERBIAS_FOLDS folds of the scored images."""
    centre = cfg.DATA.CENTERBIAS
    return CrossValidatedCenterBias(
        centre.BANDWIDTH, centre.UNIFORM_WEIGHT, cfg.EVAL.CENTERBIAS_FOLDS
    )


def evaluation_workers(cfg: CfgNode) -> int:
    """Threads scoring saliency images: EVAL.WORKERS (at least 1, checked when the config
    loads), or every available core when null."""
    workers = cfg.EVAL.WORKERS
    return available_cpus() if workers is None else workers


def evaluate_model(
    cfg: CfgNode,
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    dataset: GazeDataset,
    device: torch.device,
    output_dir: Path,
    workers: int,
    map_density: MapDensityFit | None = None,
) -> dict | None:
    """Every saliency metric of the model and the baselines on ``dataset``; None off rank 0.

    ``model`` predicts log-densities, or saliency maps (``PredictionKind.SALIENCY_MAP``: scored
    with every metric that needs no density, i.e. all but LL and IG, unless ``map_density``
    converts them on rank 0, as in :func:`code.metrics.dataset_scoring.evaluate_saliency`).
    IG is over the centre bias cross-validated on the evaluated images (DATA.CENTERBIAS
    settings, EVAL.CENTERBIAS_FOLDS folds); the gold standard is fitted leave-one-subject-out.
    Images are scored on ``workers`` threads (:func:`evaluation_workers`).
    """
    folder = output_dir / "predictions"
    write_predictions(model, loader, dataset, device, folder)
    dist.barrier()
    result = None
    if dist.is_main():
        baselines = EvaluationBaselines.build(
            dataset,
            centre_bias_model(cfg).fit(dataset),
            LeaveOneSubjectOutGoldStandard(None, None).fit(dataset),
            map_density,
        )
        settings = SaliencySettings(
            kind_name(model.prediction),
            cfg.EVAL.PROTOCOL,
            cfg.EVAL.FIXATION_MAP_SIGMA,
            cfg.EVAL.JUDD_JITTER_SEED,
            sim_optimisation(cfg.EVAL.SIM_STEPS),
        )
        result = evaluate_saliency(dataset, folder, settings, baselines, device, workers).to_json()
        if not cfg.EVAL.KEEP_PREDICTIONS:
            shutil.rmtree(folder)
    dist.barrier()
    return result


@torch.no_grad()
def evaluate_scanpath_model(
    cfg: CfgNode,
    model: torch.nn.Module,
    dataset: GazeDataset,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
) -> dict | None:
    """Conditional (per-fixation) LL, IG, NSS, AUC on scanpath items; None off rank 0.

    Scores the scanpaths ``loader`` holds, items of ``dataset``'s images (with their fixation
    rows). A scanpath model predicts one density per fixation given the ones before it, (B, N,
    H, W); a spatial model's (B, H, W) serves every fixation of its image, so both are scored on
    the same fixations and their IGs compare directly. Densities are taken to the original size
    and read at the fixations' original coordinates. IG is over the same cross-validated centre
    bias as ``evaluate_model``, which is also reported, with the uniform model, as a baseline.
    """
    model.eval()
    per_fixation = model.prediction is PredictionKind.CONDITIONAL_LOG_DENSITY
    center_bias = CenterBiasBaseline(centre_bias_model(cfg).fit(dataset))
    uniform = UniformBaseline()
    scores = {name: ConditionalScanpathEvaluator() for name in ("model", "center_bias", "uniform")}
    fix = dataset.fixations
    for batch in ProgressBar(loader, desc="evaluate", disable=not dist.is_main(), leave=False):
        prediction, _ = model(batch.to(device))
        for item, index in enumerate(batch.image_index.tolist()):
            mask = batch.fixation_mask[item]
            rows = batch.fixation_rows[item][mask].numpy()
            stimulus = dataset.stimuli[index]
            size = stimulus.size
            # one density per fixation (scanpath model), or one for the whole image
            own = prediction[item][mask.to(device)] if per_fixation else prediction[item][None]
            baseline = torch.from_numpy(center_bias.log_density(index, stimulus, own)).to(device)
            densities = {
                "model": to_original_size(own, size).expand(len(rows), *size),
                "center_bias": baseline.expand(len(rows), *size),
                "uniform": torch.from_numpy(uniform.log_density(index, stimulus, own)).expand(
                    len(rows), *size
                ),
            }
            for name, density in densities.items():
                scores[name].update(density, fix.x[rows], fix.y[rows], baseline)
    for evaluator in scores.values():  # add the other ranks' sums and counts to this rank's
        total = dist.all_reduce_sum(evaluator.state().to(device)).cpu()
        evaluator.merge(total - evaluator.state())
    results = {name: evaluator.compute() for name, evaluator in scores.items()}
    if not dist.is_main():
        return None
    return {
        "metrics": results.pop("model"),
        "baselines": results,
        "n_images": len(dataset.stimuli),
        "n_fixations": int(scores["center_bias"].state()[0, 1]),
        "baseline": {"information_gain_over": "center_bias", "conditional": True},
    }


def evaluate_history_free_densities(
    cfg: CfgNode,
    dataset: GazeDataset,
    densities: dict[str, Callable[[Stimulus], np.ndarray]],
) -> dict[str, dict]:
    """``evaluate_scanpath_model``'s scores for densities that ignore the history (the random
    and centre-bias scanpath generators'), one result per name in its layout.

    Each density (``stimulus -> log p`` at the stimulus' size) is read at every fixation of
    ``dataset`` but each scanpath's first — the targets of scanpath items with
    ``INCLUDE_FIRST: false`` — with IG over the same cross-validated centre bias, so the values
    compare with a scanpath model's conditional ones on the same fixations.
    """
    center_bias = centre_bias_model(cfg).fit(dataset)
    scores = {name: ConditionalScanpathEvaluator() for name in densities}
    fix = dataset.fixations
    targets = np.sort(np.concatenate([rows[1:] for rows in ordered_scanpaths(fix)]))
    by_image = fix.select(targets).rows_by_image(len(dataset.stimuli))
    for index, stimulus in enumerate(dataset.stimuli):
        rows = targets[by_image[index]]
        if len(rows) == 0:
            continue
        size = (stimulus.height, stimulus.width)
        baseline = torch.from_numpy(center_bias.log_density(index, *size))
        for name, density in densities.items():
            own = torch.as_tensor(density(stimulus)).expand(len(rows), *size)
            scores[name].update(own, fix.x[rows], fix.y[rows], baseline)
    return {
        name: {
            "metrics": evaluator.compute(),
            "n_images": len(dataset.stimuli),
            "n_fixations": int(evaluator.state()[0, 1]),
            "baseline": {"information_gain_over": "center_bias", "conditional": True},
        }
        for name, evaluator in scores.items()
    }
