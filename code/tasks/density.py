"""The ``density`` task: train a model of where people look by the likelihood of their fixations,
and score it as the saliency benchmark does.

The model predicts a log-density over the image (spatial items, ``DATA.SAMPLES.NAME:
saliency``) or, for each fixation, the density of it given the ones before (scanpath items,
``scanpath``). Validation: ``val_loss`` and ``val_ig``, the information gain of the predicted
densities over the training centre bias at the validation fixations (bits per fixation).

Final evaluation on the test split: items without fixation histories are scored with every
saliency metric beside the baselines (``code.engine.model_scoring.evaluate_model``, the layout of
``code.evaluate``'s ``result.json``); items with histories are scored per fixation given its
history (``evaluate_scanpath_model``), whatever the model: a spatial model's density serves
every fixation of its image, so spatial and scanpath models compare on the same fixations.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
from functools import partial
from pathlib import Path

import numpy as np
import torch
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
    split_summary,
)
from code.data.gaze import Stimulus
from code.data.loaders.csv_layout import FIXATION_COLUMNS
from code.data.samples import predicts_first_fixation, resize_rgb
from code.data.splits import SPLIT_FILE, write_split
from code.engine.model_scoring import (
    evaluate_model,
    evaluate_scanpath_model,
    evaluation_workers,
    to_original_size,
)
from code.engine.trainer import ValidationScorer
from code.engine.visualize import save_heatmap, save_overlay, save_scanpaths
from code.metrics.dataset_scoring import format_table
from code.metrics.predictions import stimulus_stem
from code.metrics.report import SaliencyReport
from code.metrics.saliency import batch_log_likelihoods
from code.models.build import GazeModel, build_segmenter
from code.models.decoders.scanpath import sample_scanpaths
from code.models.shapes import PredictionKind
from code.registry import TASKS, ConfigError
from code.tasks.base import Predictor, Task, checked_model, image_batch, input_size
from code.utils import distributed as dist
from code.utils.logging import get_logger
from code.utils.parallel import Write


class InformationGainScorer(ValidationScorer):
    """``val_ig``: mean over fixations of log2 p_model − log2 p_centre-bias, each fixation scored
    under its own density (``per_fixation``, a conditional model's) or its image's."""

    def __init__(self) -> None:
        self.higher_is_better = {"val_ig": True}
        self.sums = torch.zeros(2, dtype=torch.float64)  # Σ (ll_model − ll_centre) in nats, count

    def update(self, prediction: torch.Tensor, batch: Batch) -> None:
        mask = batch.fixation_mask
        model = batch_log_likelihoods(prediction.float(), batch.fixations, mask)
        baseline = batch_log_likelihoods(batch.centerbias.float(), batch.fixations, mask)
        gain = (model - baseline).sum().double().cpu()
        self.sums += torch.stack([gain, mask.sum().double().cpu()])

    def state(self) -> torch.Tensor:
        return self.sums

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        gain, count = state.tolist()
        return {"val_ig": gain / count / math.log(2)}


@TASKS.register("density")
class DensityTask(Task):
    """Fixation densities (spatial or conditional on the scanpath so far), trained by NLL."""

    trains = True

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg

    def check(self) -> None:
        self.workers = evaluation_workers(self.cfg)
        folds, scanpath_images = self.cfg.EVAL.CENTERBIAS_FOLDS, self.cfg.EVAL.SCANPATH_IMAGES
        if folds < 2:
            raise ConfigError(f"EVAL.CENTERBIAS_FOLDS must be at least 2, got {folds}")
        if scanpath_images is not None and scanpath_images < folds:
            raise ConfigError(
                f"EVAL.SCANPATH_IMAGES ({scanpath_images}) cannot fill EVAL.CENTERBIAS_FOLDS "
                f"({folds}) folds of the centre bias scanpaths are scored over"
            )

    def prepare(self) -> None:
        cfg = self.cfg
        self.segmenter = build_segmenter(cfg)
        self.splits = build_splits(cfg, gaze_dataset(cfg))
        self._check_split_sizes()
        self.centerbias = fit_centerbias(cfg, self.splits.train)
        self.samples = {
            name: build_samples(
                cfg,
                getattr(self.splits, name),
                name,
                self.centerbias,
                self.segmenter,
                transformed=name == "train",
            )
            for name in SPLITS
        }
        self.loaders = {
            name: build_loader(cfg, self.samples[name], name == "train") for name in SPLITS
        }
        # items with fixation histories are scored per fixation, given its history
        self.conditional = "history" in self.samples["test"].fields

    def _check_split_sizes(self) -> None:
        """What the split must hold for training and evaluation, checked before either."""
        sizes = split_sizes(self.splits)
        where = split_summary(sizes)
        folds = self.cfg.EVAL.CENTERBIAS_FOLDS
        if sizes["test"] < folds:
            raise ConfigError(
                f"EVAL.CENTERBIAS_FOLDS: the centre bias of the test images is cross-validated "
                f"over {folds} folds, but {where} images; lower EVAL.CENTERBIAS_FOLDS to at "
                f"most {sizes['test']} or enlarge the test split"
            )

    def build_model(self) -> GazeModel:
        fields = self.samples["train"].fields
        model = checked_model(self.cfg, fields, lambda kind: kind.is_density,
                              "scores (conditional) log-densities")  # fmt: skip
        model.set_centerbias(self.centerbias)  # travels in the checkpoint, for code.predict
        return model

    def validation(self, model: GazeModel) -> ValidationScorer:
        return InformationGainScorer()

    def evaluate(self, model: GazeModel, device: torch.device, output_dir: Path) -> dict | None:
        cfg = self.cfg
        if dist.is_main():  # which images were trained and scored on, for code.evaluate --split
            parts = {name: getattr(self.splits, name) for name in SPLITS}
            write_split(output_dir / SPLIT_FILE, self.splits.test.name, parts)
        if not self.conditional:
            test = self.splits.test
            return evaluate_model(
                cfg, model, self.loaders["test"], test, device, output_dir, self.workers
            )
        dataset = self.splits.test
        if cfg.EVAL.SCANPATH_IMAGES is not None:
            count = min(cfg.EVAL.SCANPATH_IMAGES, len(dataset.stimuli))
            dataset = dataset.subset(np.arange(count))
        samples = build_samples(
            cfg, dataset, "test", self.centerbias, self.segmenter, transformed=False
        )
        loader = build_loader(cfg, samples, train=False)
        return evaluate_scanpath_model(cfg, model, dataset, loader, device)

    def summary(self, report: dict) -> str:
        """The metric table, plus the share of the oracle's information gain where it is known."""
        saliency = SaliencyReport.from_json(report, "the test set's metrics")
        table = format_table(saliency)
        if "oracle" in saliency.baselines:
            share = saliency.metrics["IG"] / saliency.baselines["oracle"]["IG"]
            table += f"\nmodel IG / oracle IG = {share:.1%}"
        return table

    @torch.no_grad()
    def save_figures(
        self, model: GazeModel, device: torch.device, output_dir: Path, report: dict
    ) -> None:
        """``overlays/<stem>_overlay.png`` of the first test images: image and fixations, the
        fixation map the metrics blur, the predicted density (and the true one of generated
        data), the image's IG and NSS in the title.

        (Sampled scanpaths are drawn by ``code.predict --scanpaths K``.)"""
        if self.conditional:
            return
        model.eval()
        folder = output_dir / "overlays"
        folder.mkdir(exist_ok=True)
        dataset, samples = self.splits.test, self.samples["test"]
        collate = self.loaders["test"].collate_fn
        per_image = SaliencyReport.from_json(report, "the test set's metrics").per_image
        row_of = {image: k for k, image in enumerate(per_image.image)}
        for index in range(min(self.cfg.EVAL.NUM_OVERLAYS, len(samples))):
            prediction, _ = model(collate([samples[index]]).to(device))
            stimulus = dataset.stimuli[index]
            log_density = to_original_size(prediction[0], stimulus.size).cpu().numpy()
            fix = dataset.fixations_of(index)
            truth = stimulus.true_log_density() if stimulus.true_log_density else None
            title = stimulus.id
            if stimulus.id in row_of:
                k, scores = row_of[stimulus.id], per_image.values["model"]
                title += f": IG {scores['IG'][k]:.2f} bits/fixation, NSS {scores['NSS'][k]:.2f}"
            save_overlay(
                folder / f"{stimulus_stem(stimulus)}_overlay.png",
                stimulus.read(),
                log_density,
                np.stack([fix.x, fix.y], 1),
                title,
                self.cfg.EVAL.FIXATION_MAP_SIGMA,
                truth,
            )
        get_logger().info("overlays written to %s", folder)

    @classmethod
    def add_predict_options(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--scanpaths", type=int, default=0, metavar="K", help="scanpaths per image"
        )
        parser.add_argument(
            "--scanpath-length", type=int, default=10, help="fixations per scanpath"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the scanpath sampling")
        parser.add_argument("--no-overlays", dest="overlays", action="store_false",
                            help="write no pictures (heat-map overlays, scanpath drawings), only "
                            "the densities and scanpaths")  # fmt: skip

    def predictor(
        self, model: GazeModel, device: torch.device, options: argparse.Namespace
    ) -> Predictor:
        if options.scanpaths and model.prediction is not PredictionKind.CONDITIONAL_LOG_DENSITY:
            raise SystemExit(f"{options.checkpoint}: not a scanpath model; --scanpaths needs one")
        return DensityPredictor(model, self.cfg, options)


class DensityPredictor(Predictor):
    """Log-densities (and sampled scanpaths) for images of any size, from one trained model.

    Each image is scaled (aspect kept) to about the pixel count the model was trained at; the
    centre bias stored in the checkpoint is evaluated at that size. Writes, in the layouts
    ``code.evaluate`` reads: ``densities/<stem>.npy`` (the log-density at the original size;
    for a scanpath model, of the fixation after one at the image centre),
    ``overlays/<stem>_overlay.png`` and, with ``--scanpaths K``, ``scanpaths.csv`` (the generic
    layout; subject = sample 0..K-1, durations unknown), ``scanpaths/<stem>_scanpaths.npy``
    ((K, L, 2) fixations (x, y) in original pixels) and ``scanpaths/<stem>_scanpaths.png``;
    no pictures with ``--no-overlays``.
    """

    def __init__(self, model: GazeModel, cfg: CfgNode, options: argparse.Namespace) -> None:
        self.model = model
        self.cfg = cfg
        self.options = options
        self.centerbias = model.centerbias(
            cfg.DATA.CENTERBIAS.BANDWIDTH, cfg.DATA.CENTERBIAS.UNIFORM_WEIGHT
        )
        self.segmenter = build_segmenter(cfg)
        self.conditional = model.prediction is PredictionKind.CONDITIONAL_LOG_DENSITY
        # Trained without first fixations (they follow a central fixation cross): start there.
        self.first_at_centre = not predicts_first_fixation(cfg.DATA.SAMPLES)
        # scanpaths.csv, by image: (image, subject, fix_index, x, y)
        self.scanpath_rows: dict[str, list[tuple]] = {}

    def batch(self, image: np.ndarray, name: str) -> Batch:
        height, width = input_size(*image.shape[:2], tuple(self.cfg.DATA.IMAGE_SIZE))
        resized = resize_rgb(image, height, width)
        segments = None
        if self.segmenter is not None:
            stimulus = Stimulus(name, image.shape[0], image.shape[1], None)
            segments = torch.from_numpy(self.segmenter(resized, stimulus).astype(np.int64))[None]
        centre = torch.tensor([[[width / 2, height / 2]]])
        batch = dataclasses.replace(
            image_batch(resized, image.shape[:2]),
            fixations=centre,
            fixation_mask=torch.ones(1, 1, dtype=torch.bool),
            centerbias=torch.from_numpy(self.centerbias.log_density(height, width)).float()[None],
            segments=segments,
        )
        # History for a scanpath model's density: the centre, then nothing (masked).
        return self.with_history(batch, centre[0])

    def with_history(self, batch: Batch, fixations: torch.Tensor) -> Batch:
        """``batch`` (of one image, made by ``batch``) with the scanpath so far: ``fixations``
        (L, 2) (x, y) in pixels of ``batch.input``, oldest first (L may be 0). A scanpath model
        reads the last ``history_length``, most recent first, as it was trained; a spatial model
        none."""
        k = self.model.decoder.history_length if self.conditional else 1
        before = len(fixations) - 1 - torch.arange(k)  # history[j]: fixation L - 1 - j
        mask = before >= 0
        history = torch.zeros(k, 2) if len(fixations) == 0 else fixations[before.clamp(min=0)]
        return dataclasses.replace(
            batch, history=(history * mask[:, None])[None, None], history_mask=mask[None, None]
        )

    def log_densities(self, batch: Batch) -> list[torch.Tensor]:
        """Each image's log-density at its original size (natural log) from ``batch`` (of
        images made by ``batch``); a scanpath model's of the fixation after the batch's history
        (``with_history``)."""
        prediction = self.model(batch)[0]
        if self.conditional:  # the one fixation of each image
            prediction = prediction[:, 0]
        sizes = batch.original_size.tolist()
        return [to_original_size(p, tuple(size)) for p, size in zip(prediction, sizes, strict=True)]

    def scanpaths(self, batch: Batch, count: int, length: int, seed: int) -> np.ndarray:
        """(count, length, 2) sampled fixations (x, y) in the original image's pixels."""
        generator = torch.Generator().manual_seed(seed)
        xy = sample_scanpaths(self.model, batch, count, length, self.first_at_centre, generator)
        height, width = batch.input.shape[-2:]
        original_h, original_w = batch.original_size[0].tolist()
        return (xy.cpu() * torch.tensor([original_w / width, original_h / height])).numpy()

    def predict(
        self, batch: Batch, images: list[np.ndarray], names: list[str], output: Path
    ) -> list[Write]:
        densities = self.log_densities(batch)
        options = self.options
        folders = {"densities": True, "overlays": options.overlays,
                   "scanpaths": bool(options.scanpaths)}  # fmt: skip
        for folder in (name for name, used in folders.items() if used):
            (output / folder).mkdir(exist_ok=True)
        writes: list[Write] = []
        for item, (image, name) in enumerate(zip(images, names, strict=True)):
            stem = Path(name).stem
            log_density = densities[item].cpu().numpy().astype(np.float32)
            writes.append(partial(np.save, output / "densities" / f"{stem}.npy", log_density))
            if options.overlays:
                path = output / "overlays" / f"{stem}_overlay.png"
                writes.append(partial(save_heatmap, path, image, log_density))
            if options.scanpaths:
                writes += self.scanpath_writes(batch.item(item), image, name, output)
        return writes

    def scanpath_writes(
        self, batch: Batch, image: np.ndarray, name: str, output: Path
    ) -> list[Write]:
        """Sample the scanpaths of one image (``batch``), keep their rows for ``scanpaths.csv``
        and return the writes of their array and drawing."""
        options = self.options
        scanpaths = self.scanpaths(batch, options.scanpaths, options.scanpath_length, options.seed)
        self.scanpath_rows[name] = [
            (name, sample, index, x, y)
            for sample, path in enumerate(scanpaths.tolist())
            for index, (x, y) in enumerate(path)
        ]
        folder, stem = output / "scanpaths", Path(name).stem
        writes: list[Write] = [partial(np.save, folder / f"{stem}_scanpaths.npy", scanpaths)]
        if options.overlays:
            picture = folder / f"{stem}_scanpaths.png"
            labels = [f"sample {k + 1}" for k in range(len(scanpaths))]
            title = f"{stem}: {len(scanpaths)} sampled scanpaths, numbered in fixation order"
            writes.append(partial(save_scanpaths, picture, image, scanpaths, labels, title))
        return writes

    def finish(self, output: Path, names: list[str]) -> None:
        if self.options.scanpaths:
            with (output / "scanpaths.csv").open("w", newline="") as file:
                table = csv.writer(file)
                table.writerow(FIXATION_COLUMNS)
                rows = (row for name in names for row in self.scanpath_rows[name])
                table.writerows((*row, "", "") for row in rows)
