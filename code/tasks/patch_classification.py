"""The ``patch_classification`` task: Mr-CNN's training, a classifier of fixated vs not fixated
points, scored by the saliency maps it makes densely.

Items are images with points drawn from their fixation maps (``DATA.SAMPLES.NAME: patches``);
the model (e.g. the ``multires`` encoder of crops + the ``point_classifier`` decoder)
predicts a logit per point, trained by binary cross-entropy. Mr-CNN's recipe is configuration:
SGD (``TRAIN.OPTIMIZER``), momentum rising per step (``TRAIN.MOMENTUM_SCHEDULE.NAME: linear``),
the first layers' max-norm (``MAX_NORM`` of the ``multires`` encoder), early stopping on
``val_auc`` (``TRAIN.BEST_METRIC``, ``TRAIN.PATIENCE``).

A saliency map is the classifier's fixation probability on a grid of points (``GRID`` rows x
columns spread evenly over the image, or one point every ``GRID_STRIDE`` input pixels), cut in
batches of ``POINTS_PER_PASS`` points, taken to the image's size bicubically
(:class:`DenseSaliency`, a ``PredictionKind.SALIENCY_MAP`` model). Validation: ``val_auc``, the
AUC of the validation images' maps at their fixations (per fixation), and the learned σ of a
pre-filter per stream (``prefilter_sigma_<s>``). Final evaluation: the test images' maps at
their original size, scored by ``code.engine.model_scoring.evaluate_model`` beside the centre bias
and the other baselines. A map is no density, so LL and IG are those of the maps converted as
the MIT/Tübingen benchmark converts classic models (:mod:`code.metrics.map_density`): a monotone
nonlinearity, a blur and a centre-bias weight fitted on the *training* images' maps
(``DENSITY_FIT_KNOTS``, ``DENSITY_FIT_DOWNSAMPLE``, ``DENSITY_FIT_ITERATIONS``), written to
``map_density.json``; every other metric is the map's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from code.data.batch import Batch
from code.data.build import (
    SPLITS,
    build_loader,
    build_samples,
    build_splits,
    fit_centerbias,
    gaze_dataset,
    split_sizes,
)
from code.data.samples import resize_rgb
from code.data.splits import SPLIT_FILE, write_split
from code.engine.model_scoring import (
    evaluate_model,
    evaluation_workers,
    map_to_original_size,
    write_predictions,
)
from code.engine.trainer import ValidationScorer
from code.engine.visualize import save_heatmap
from code.metrics.dataset_scoring import format_table
from code.metrics.map_density import MapDensityFit, MapDensityOptions, fit_map_density
from code.metrics.predictions import stimulus_stem
from code.metrics.report import SaliencyReport
from code.metrics.saliency import auc
from code.models.build import GazeModel
from code.models.shapes import PredictionKind
from code.registry import TASKS, ConfigError
from code.tasks.base import Predictor, Task, checked_model, image_batch
from code.utils import distributed as dist
from code.utils.parallel import Write


class DenseSaliency(nn.Module):
    """A point classifier as a saliency-map model: ``forward(batch)`` gives (B, rows, cols)
    fixation probabilities on the grid of points (see the module docstring)."""

    prediction = PredictionKind.SALIENCY_MAP

    def __init__(
        self,
        model: GazeModel,
        grid: list[int] | None,
        grid_stride: int | None,
        points_per_pass: int,
    ) -> None:
        super().__init__()
        self.model = model
        self.grid = grid
        self.grid_stride = grid_stride
        self.points_per_pass = points_per_pass

    def grid_points(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(rows, cols, 2) points (x, y) at the centres of the grid's cells."""
        if self.grid is not None:
            rows, cols = self.grid
            ys = (torch.arange(rows, device=device) + 0.5) * (height / rows)
            xs = (torch.arange(cols, device=device) + 0.5) * (width / cols)
        else:
            step = self.grid_stride
            ys = ((torch.arange(math.ceil(height / step), device=device) + 0.5) * step).clamp(
                max=height - 0.5
            )
            xs = ((torch.arange(math.ceil(width / step), device=device) + 0.5) * step).clamp(
                max=width - 0.5
            )
        return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, Batch]:
        height, width = batch.input.shape[-2:]
        grid = self.grid_points(height, width, batch.input.device)
        logits = [
            self.model(dataclasses.replace(batch, points=chunk.expand(len(batch), -1, -1)))[0]
            for chunk in grid.flatten(0, 1).split(self.points_per_pass)
        ]
        return torch.cat(logits, dim=1).sigmoid().view(len(batch), *grid.shape[:2]), batch


class DenseAUCScorer(ValidationScorer):
    """``val_auc``: AUC of the dense maps (at the input size) at the fixations, per fixation;
    ``prefilter_sigma_<s>``: the learned σ of stream s's pre-filter, if it has one."""

    def __init__(self, dense: DenseSaliency) -> None:
        self.dense = dense
        self.higher_is_better = {"val_auc": True}
        self.sums = torch.zeros(2, dtype=torch.float64)  # Σ AUC·fixations, fixations

    def update(self, prediction: torch.Tensor, batch: Batch) -> None:
        maps = self.dense(batch)[0]
        maps = map_to_original_size(maps, tuple(batch.input.shape[-2:]))
        for saliency, fixations, mask in zip(maps, batch.fixations, batch.fixation_mask,
                                             strict=True):  # fmt: skip
            xy = fixations[mask].cpu()
            if len(xy):
                value = auc(saliency.cpu(), xy[:, 0], xy[:, 1]).item()
                self.sums += torch.tensor([value * len(xy), len(xy)], dtype=torch.float64)

    def state(self) -> torch.Tensor:
        return self.sums

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        total, count = state.tolist()
        sigmas = prefilter_sigmas(self.dense.model)
        return {"val_auc": total / count, **{f"prefilter_sigma_{s}": v
                                             for s, v in enumerate(sigmas or [])}}  # fmt: skip


def prefilter_sigmas(model: GazeModel) -> list[float] | None:
    """The learned pre-filter σ per stream of a multi-resolution encoder; None without."""
    sigmas = getattr(model.encoder, "prefilter_sigmas", None)
    return None if sigmas is None else sigmas()


@TASKS.register("patch_classification")
class PatchClassificationTask(Task):
    """Train a fixated-vs-not point classifier; score its dense maps as saliency maps."""

    trains = True

    def __init__(
        self,
        cfg: CfgNode,
        grid: list[int] | None,
        grid_stride: int | None,
        points_per_pass: int,
        density_fit_knots: int,
        density_fit_downsample: int,
        density_fit_iterations: int,
    ) -> None:
        self.cfg = cfg
        self.grid = grid
        self.grid_stride = grid_stride
        self.points_per_pass = points_per_pass
        self.density_fit = MapDensityOptions(
            density_fit_knots, density_fit_downsample, density_fit_iterations
        )
        self.check_own_keys()

    def check_own_keys(self) -> None:
        """Refuse the task's own settings it cannot use, naming the key in its node."""
        if (self.grid is None) == (self.grid_stride is None):
            raise ConfigError("set exactly one of GRID [rows, cols] and GRID_STRIDE", key="")
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 1):
            raise ConfigError(f"must be [rows, cols] >= 1, got {self.grid}", key="GRID")
        if self.grid_stride is not None and self.grid_stride < 1:
            raise ConfigError(f"must be at least 1, got {self.grid_stride}", key="GRID_STRIDE")
        if self.points_per_pass < 1:
            raise ConfigError("must be at least 1", key="POINTS_PER_PASS")
        try:
            self.density_fit.check()
        except ValueError as err:
            raise ConfigError(str(err), key="DENSITY_FIT_*") from err

    def check(self) -> None:
        self.workers = evaluation_workers(self.cfg)
        if self.cfg.EVAL.PROTOCOL != "raw":
            raise ConfigError(
                f"EVAL.PROTOCOL {self.cfg.EVAL.PROTOCOL!r}: the benchmark protocol derives maps "
                "from a density, and a classifier's map is none; use raw"
            )
        if self.cfg.EVAL.CENTERBIAS_FOLDS < 2:
            raise ConfigError("EVAL.CENTERBIAS_FOLDS must be at least 2")

    def prepare(self) -> None:
        cfg = self.cfg
        self.splits = build_splits(cfg, gaze_dataset(cfg))
        sizes = split_sizes(self.splits)
        if sizes["test"] < cfg.EVAL.CENTERBIAS_FOLDS:
            raise ConfigError(
                f"EVAL.CENTERBIAS_FOLDS {cfg.EVAL.CENTERBIAS_FOLDS} exceeds the "
                f"{sizes['test']} test images the centre bias is cross-validated on"
            )
        self.centerbias = fit_centerbias(cfg, self.splits.train)
        self.samples = {
            name: build_samples(
                cfg,
                getattr(self.splits, name),
                name,
                self.centerbias,
                None,
                transformed=name == "train",
            )
            for name in SPLITS
        }
        self.loaders = {
            name: build_loader(cfg, self.samples[name], name == "train") for name in SPLITS
        }
        # The training images as they are evaluated, for the density fit: the training items
        # (and cache entry) without the transforms (a flipped image's map would not match its
        # fixations).
        train_images = build_samples(cfg, self.splits.train, "train", self.centerbias, None,
                                     transformed=False)  # fmt: skip
        self.train_images = build_loader(cfg, train_images, train=False)

    def build_model(self) -> GazeModel:
        return checked_model(self.cfg, self.samples["train"].fields,
                             lambda kind: kind is PredictionKind.POINT_LOGITS,
                             "classifies points")  # fmt: skip

    def dense(self, model: GazeModel) -> DenseSaliency:
        """``model`` as the saliency-map model of the configured grid."""
        return DenseSaliency(model, self.grid, self.grid_stride, self.points_per_pass)

    def validation(self, model: GazeModel) -> ValidationScorer:
        return DenseAUCScorer(self.dense(model))

    @torch.no_grad()
    def evaluate(self, model: GazeModel, device: torch.device, output_dir: Path) -> dict | None:
        if dist.is_main():  # which images were trained and scored on, for code.evaluate --split
            parts = {name: getattr(self.splits, name) for name in SPLITS}
            write_split(output_dir / SPLIT_FILE, self.splits.test.name, parts)
        dense = self.dense(model)
        density = self.fit_density(dense, device, output_dir)
        report = evaluate_model(self.cfg, dense, self.loaders["test"], self.splits.test, device,
                                output_dir, self.workers, density)  # fmt: skip
        sigmas = prefilter_sigmas(model)
        if report is not None and sigmas is not None:
            report["prefilter_sigma"] = sigmas
        return report

    def fit_density(
        self, dense: DenseSaliency, device: torch.device, output_dir: Path
    ) -> MapDensityFit | None:
        """The conversion of ``dense``'s maps into densities, fitted on the training images'
        maps and fixations with the training centre bias, saved to ``map_density.json``; None
        off rank 0 (which alone scores)."""
        folder = output_dir / "train_maps"
        write_predictions(dense, self.train_images, self.splits.train, device, folder)
        dist.barrier()
        if not dist.is_main():
            return None
        # images without fixations are no patch items (nor carry any likelihood): no maps
        train = self.splits.train
        rows = train.fixations.rows_by_image(len(train.stimuli))
        train = train.subset([i for i, r in enumerate(rows) if len(r)])
        maps = (np.load(folder / f"{stimulus_stem(s)}.npy") for s in train.stimuli)
        fit = fit_map_density(train, maps, self.centerbias, self.density_fit)
        fit.save(output_dir / "map_density.json")
        if not self.cfg.EVAL.KEEP_PREDICTIONS:
            shutil.rmtree(folder)
        return fit

    def summary(self, report: dict) -> str:
        saliency = SaliencyReport.from_json(report, "the test set's metrics")
        table = format_table(saliency)
        if saliency.map_density is not None:
            fitted = saliency.map_density["parameters"]
            table += (
                f"\nLL and IG: the maps as densities, fitted on {fitted['training']['images']} "
                f"training images (blur σ {fitted['sigma']:.1f} px, centre-bias weight "
                f"{fitted['center_bias_weight']:.3f})"
            )
        if "prefilter_sigma" in saliency.extra:
            sigmas = ", ".join(f"{s:.3f}" for s in saliency.extra["prefilter_sigma"])
            table += f"\nlearned pre-filter sigma per stream (resized pixels): {sigmas}"
        return table

    def predictor(
        self, model: GazeModel, device: torch.device, options: argparse.Namespace
    ) -> Predictor:
        return SaliencyMapPredictor(self.dense(model), tuple(self.cfg.DATA.IMAGE_SIZE))


class SaliencyMapPredictor(Predictor):
    """``maps/<stem>.npy``: each image's dense map at its original size (what ``code.evaluate
    saliency --kind saliency-map`` reads), and ``overlays/<stem>_overlay.png``. Images are
    resized to the trained ``DATA.IMAGE_SIZE``."""

    def __init__(self, dense: DenseSaliency, size: tuple[int, int]) -> None:
        self.dense = dense
        self.size = size

    def batch(self, image: np.ndarray, name: str) -> Batch:
        return image_batch(resize_rgb(image, *self.size), image.shape[:2])

    def predict(
        self, batch: Batch, images: list[np.ndarray], names: list[str], output: Path
    ) -> list[Write]:
        maps = self.dense(batch)[0]
        for folder in ("maps", "overlays"):
            (output / folder).mkdir(exist_ok=True)
        writes: list[Write] = []
        for item, (image, name) in enumerate(zip(images, names, strict=True)):
            stem = Path(name).stem
            saliency = map_to_original_size(maps[item], image.shape[:2]).cpu().numpy()
            saliency = saliency.astype(np.float32)
            writes.append(partial(np.save, output / "maps" / f"{stem}.npy", saliency))
            # the overlay shows the map scaled to its maximum (bicubic may undershoot 0)
            shown = np.log(np.clip(saliency, 1e-12, None))
            path = output / "overlays" / f"{stem}_overlay.png"
            writes.append(partial(save_heatmap, path, image, shown))
        return writes
