"""Score a log-density model on held-out images, beside its baselines (and the oracle, if known).

Every prediction is taken back to the stimulus' original size and scored against the fixations
in original pixels, so numbers are comparable with anyone else's on the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from code.data.gaze import GazeDataset
from code.metrics.baselines import uniform_log_density
from code.utils import distributed as dist

LN2 = float(np.log(2))


def to_original_size(log_density: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (..., H, W) log-densities to ``size`` and renormalise each over the new pixels."""
    if tuple(log_density.shape[-2:]) == size:
        return log_density
    lead, hw = log_density.shape[:-2], log_density.shape[-2:]
    resized = F.interpolate(
        log_density.reshape(-1, 1, *hw).float(), size=size, mode="bilinear", align_corners=False
    )
    return torch.log_softmax(resized.flatten(1), dim=1).view(*lead, *size)


@dataclass
class _Sums:
    """Per-fixation sums and counts; reducing them over ranks gives exact averages."""

    log_likelihood: float = 0.0
    nss: float = 0.0
    auc: float = 0.0
    fixations: float = 0.0


def _score(log_density: np.ndarray, xs: np.ndarray, ys: np.ndarray, sums: _Sums) -> None:
    rows, cols = ys.astype(int), xs.astype(int)
    at_fixations = log_density[rows, cols]
    sums.log_likelihood += float(at_fixations.sum())
    density = np.exp(log_density)
    sums.nss += float(((density[rows, cols] - density.mean()) / density.std()).sum())
    sums.auc += _auc(density.ravel(), density[rows, cols]) * len(xs)
    sums.fixations += len(xs)


def _auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    negatives = np.sort(negatives)
    below = np.searchsorted(negatives, positives, side="left")
    equal = np.searchsorted(negatives, positives, side="right") - below
    return float(np.mean((below + 0.5 * equal) / len(negatives)))


@torch.no_grad()
def evaluate_log_density_model(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    dataset: GazeDataset,
    centerbias: Callable[[int, int], np.ndarray],
    device: torch.device,
    progress: bool,
) -> dict[str, dict[str, float]]:
    """Metrics of the model and of each baseline: {"model": {...}, "centerbias": {...}, ...}."""
    model.eval()
    names = ["model", "centerbias", "uniform"]
    if all(s.true_log_density is not None for s in dataset.stimuli):
        names.append("oracle")
    sums = {name: _Sums() for name in names}
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        prediction = model(batch.to(device))
        for item, index in enumerate(batch.image_index.tolist()):
            stimulus = dataset.stimuli[index]
            fix = dataset.fixations_of(index)
            predictions = {
                "model": to_original_size(prediction[item], stimulus.size).cpu().numpy(),
                "centerbias": centerbias(*stimulus.size),
                "uniform": uniform_log_density(*stimulus.size),
            }
            if "oracle" in names:
                predictions["oracle"] = stimulus.true_log_density()
            for name in names:
                _score(predictions[name], fix.x, fix.y, sums[name])
    return {name: _finish(s, sums["centerbias"]) for name, s in sums.items()}


def _finish(sums: _Sums, centerbias: _Sums) -> dict[str, float]:
    totals = dist.all_reduce_sum(
        torch.tensor(
            [sums.log_likelihood, sums.nss, sums.auc, sums.fixations, centerbias.log_likelihood],
            dtype=torch.float64,
        )
    ).tolist()
    ll, nss, auc, n, cb_ll = totals
    return {
        "LL": ll / n,
        "IG": (ll - cb_ll) / n / LN2,
        "NSS": nss / n,
        "AUC": auc / n,
    }


@torch.no_grad()
def evaluate_conditional_log_likelihood(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    dataset: GazeDataset,
    centerbias: Callable[[int, int], np.ndarray],
    device: torch.device,
    progress: bool,
) -> dict[str, dict[str, float]]:
    """Per-fixation LL and IG on scanpath samples (each fixation given the ones before it).

    A scanpath model predicts one density per fixation, (B, N, H, W); a spatial model's (B, H, W)
    serves every fixation of its image, so both are scored on exactly the same fixations. Each
    density is taken to the original size and read at the fixation's original coordinates.
    LL in nats, IG over the centre bias in bits, both averaged over fixations.
    """
    model.eval()
    names = ("model", "centerbias", "uniform")
    sums = torch.zeros(len(names) + 1, dtype=torch.float64)  # LLs, then the fixation count
    fix = dataset.fixations
    for batch in tqdm(loader, desc="evaluate (conditional)", disable=not progress, leave=False):
        if batch.fixation_rows is None:
            raise ValueError("conditional evaluation needs scanpath samples (DATA.SAMPLES)")
        prediction = model(batch.to(device))
        for item, index in enumerate(batch.image_index.tolist()):
            rows = batch.fixation_rows[item][batch.fixation_mask[item]].numpy()
            size = dataset.stimuli[index].size
            own = prediction[item] if prediction.dim() == 4 else prediction[item][None]
            log_density = to_original_size(own[: len(rows)], size).cpu()
            r, c = np.floor(fix.y[rows]).astype(int), np.floor(fix.x[rows]).astype(int)
            at = log_density[np.arange(len(rows)) % len(log_density), r, c]
            sums += torch.tensor(
                [
                    float(at.double().sum()),
                    float(centerbias(*size)[r, c].sum()),
                    float(uniform_log_density(*size)[r, c].sum()),
                    len(rows),
                ],
                dtype=torch.float64,
            )
    *ll, n = dist.all_reduce_sum(sums.to(device)).tolist()
    return {
        name: {"LL": value / n, "IG": (value - ll[1]) / n / LN2}
        for name, value in zip(names, ll, strict=True)
    }
