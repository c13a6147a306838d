"""Score a trained log-density model exactly as ``code.evaluate`` scores anyone's predictions.

The model's predictions for the evaluation images are written as ``<stimulus stem>.npy``
log-densities at each stimulus' original size (each rank its share), then rank 0 scores that
folder with ``code.evaluate.evaluate_saliency`` — the same metric code, baselines and JSON
layout as for predictions made elsewhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from yacs.config import CfgNode

from code.data.gaze import GazeDataset
from code.evaluate import evaluate_saliency, sim_optimisation, stimulus_stem
from code.metrics.baselines import CrossValidatedCenterBias, LeaveOneSubjectOutGoldStandard
from code.utils import distributed as dist


def to_original_size(log_density: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a (H, W) log-density to ``size`` and renormalise it over the new pixels."""
    if tuple(log_density.shape) == size:
        return log_density
    resized = F.interpolate(
        log_density[None, None].float(), size=size, mode="bilinear", align_corners=False
    )
    return torch.log_softmax(resized.flatten(), dim=0).view(size)


@torch.no_grad()
def write_predictions(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    dataset: GazeDataset,
    device: torch.device,
    folder: Path,
) -> None:
    """Save this rank's predictions as float32 ``.npy`` log-densities at original size."""
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    for batch in tqdm(loader, desc="predict", disable=not dist.is_main(), leave=False):
        prediction = model(batch.to(device))
        for item, index in enumerate(batch.image_index.tolist()):
            stimulus = dataset.stimuli[index]
            log_density = to_original_size(prediction[item], stimulus.size)
            np.save(folder / f"{stimulus_stem(stimulus)}.npy", log_density.cpu().numpy())


def evaluate_model(
    cfg: CfgNode,
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    dataset: GazeDataset,
    device: torch.device,
    output_dir: Path,
) -> dict | None:
    """Every saliency metric of the model and the baselines on ``dataset``; None off rank 0.

    IG is over the centre bias cross-validated on the evaluated images (DATA.CENTERBIAS
    settings, EVAL.CENTERBIAS_FOLDS folds); the gold standard is fitted leave-one-subject-out.
    """
    folder = output_dir / "predictions"
    write_predictions(model, loader, dataset, device, folder)
    dist.barrier()
    result = None
    if dist.is_main():
        centerbias = CrossValidatedCenterBias(
            cfg.DATA.CENTERBIAS.BANDWIDTH,
            cfg.DATA.CENTERBIAS.UNIFORM_WEIGHT,
            cfg.EVAL.CENTERBIAS_FOLDS,
        )
        result = evaluate_saliency(
            dataset,
            folder,
            "log-density",
            cfg.EVAL.PROTOCOL,
            cfg.EVAL.FIXATION_MAP_SIGMA,
            cfg.EVAL.JUDD_JITTER_SEED,
            centerbias.fit(dataset),
            LeaveOneSubjectOutGoldStandard(None, None).fit(dataset),
            sim_optimisation(cfg.EVAL.SIM_STEPS),
            device,
        )
        if not cfg.EVAL.KEEP_PREDICTIONS:
            shutil.rmtree(folder)
    dist.barrier()
    return result
