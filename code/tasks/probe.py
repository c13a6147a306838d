"""The ``linear_probe`` task: how linearly an encoder's code separates image classes, the
standard test of a self-supervised representation (the masked-image-modelling seed's protocol
on STL-10).

The model is the encoder, its weights from a pretraining run (``TRAIN.INIT.CHECKPOINT`` with
``STRICT: false``: the encoder's keys load, the reconstruction decoder's are not used) and
frozen (``TRAIN.FREEZE: [encoder.*]``), with the ``linear_probe`` decoder; leaving the encoder
unfrozen at a small learning rate is fine-tuning. Items are labelled images
(``DATA.SAMPLES.NAME: labelled``); training and validation images come from ``DATA.DATASET``
split by ``DATA.SPLIT`` (STL-10 ``train``: 4000 / 1000), early stopping on the validation loss
(``TRAIN.PATIENCE``); the test images from ``TEST_DATASET`` (STL-10 ``test``).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from yacs.config import CfgNode

from code.data.batch import Batch
from code.data.build import build_splits, load_dataset
from code.data.samples import resize_rgb
from code.engine.trainer import ValidationScorer
from code.models.build import GazeModel
from code.models.shapes import PredictionKind
from code.registry import DATASETS, TASKS, ConfigError, SubPart
from code.tasks.base import Predictor, Task, checked_model, image_batch, image_data
from code.utils import distributed as dist
from code.utils.parallel import Write


class AccuracyScorer(ValidationScorer):
    """``val_accuracy``: the share of images whose largest logit is their class."""

    def __init__(self) -> None:
        self.higher_is_better = {"val_accuracy": True}
        self.sums = torch.zeros(2, dtype=torch.float64)  # right, images

    def update(self, prediction: torch.Tensor, batch: Batch) -> None:
        right = (prediction.argmax(dim=1) == batch.label).sum()
        self.sums += torch.tensor([float(right), float(len(batch))], dtype=torch.float64)

    def state(self) -> torch.Tensor:
        return self.sums

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        return {"val_accuracy": float(state[0] / state[1])}


@TASKS.register("linear_probe")
class LinearProbeTask(Task):
    """Train a classifier on (frozen) encoder features; report accuracy on ``test_dataset``."""

    trains = True

    def __init__(self, cfg: CfgNode, test_dataset: SubPart[DATASETS]) -> None:
        self.cfg = cfg
        self.test_dataset = test_dataset

    def check(self) -> None:
        if self.cfg.DATA.SPLIT.TEST_FRACTION != 0 or self.cfg.DATA.SPLIT.FOLDS is not None:
            raise ConfigError(
                "task 'linear_probe' tests on TASK.LINEAR_PROBE.TEST_DATASET: DATA.SPLIT must "
                "keep no test part (TEST_FRACTION 0, FOLDS null)"
            )

    def prepare(self) -> None:
        splits = build_splits(self.cfg, load_dataset(self.cfg))
        splits.test = self.test_dataset()
        self.splits, self.samples, self.loaders = image_data(self.cfg, splits)

    def build_model(self) -> GazeModel:
        classifies = lambda kind: kind is PredictionKind.CLASS_LOGITS  # noqa: E731
        return checked_model(self.cfg, self.samples["train"].fields, classifies,
                             "classifies images")  # fmt: skip

    def validation(self, model: GazeModel) -> ValidationScorer:
        return AccuracyScorer()

    @torch.no_grad()
    def evaluate(self, model: GazeModel, device: torch.device, output_dir: Path) -> dict | None:
        model.eval()
        classes = model.decoder.linear.out_features
        # per class: images, right; and the summed loss
        counts = torch.zeros(2, classes, dtype=torch.float64, device=device)
        loss = torch.zeros(1, dtype=torch.float64, device=device)
        for batch in self.loaders["test"]:
            prediction, seen = model(batch.to(device))
            right = (prediction.argmax(dim=1) == seen.label).double()
            counts[0].index_add_(0, seen.label, torch.ones_like(right))
            counts[1].index_add_(0, seen.label, right)
            loss += model.loss(prediction, seen)[0].double()
        counts, loss = dist.all_reduce_sum(counts).cpu(), dist.all_reduce_sum(loss).item()
        if not dist.is_main():
            return None
        images = int(counts[0].sum())
        return {
            "metrics": {"accuracy": float(counts[1].sum()) / images, "loss": loss / images},
            "per_class_accuracy": (counts[1] / counts[0].clamp(min=1)).tolist(),
            "n_images": images,
            "test_dataset": self.splits.test.name,
        }

    def summary(self, report: dict) -> str:
        m = report["metrics"]
        return (
            f"accuracy {m['accuracy']:.4f} (cross-entropy {m['loss']:.4f} nats) on "
            f"{report['n_images']} images of {report['test_dataset']}"
        )

    def predictor(
        self, model: GazeModel, device: torch.device, options: argparse.Namespace
    ) -> Predictor:
        return ClassPredictor(model, tuple(self.cfg.DATA.IMAGE_SIZE))


class ClassPredictor(Predictor):
    """``classes.csv``: per image, the predicted class and every class's probability."""

    def __init__(self, model: GazeModel, size: tuple[int, int]) -> None:
        self.model, self.size = model, size
        self.rows: dict[str, list] = {}  # by image name

    def batch(self, image: np.ndarray, name: str) -> Batch:
        return image_batch(resize_rgb(image, *self.size), image.shape[:2])

    def predict(
        self, batch: Batch, images: list[np.ndarray], names: list[str], output: Path
    ) -> list[Write]:
        logits, _ = self.model(batch)
        for name, probabilities in zip(names, logits.float().softmax(dim=1).cpu(), strict=True):
            self.rows[name] = [name, int(probabilities.argmax()), *probabilities.tolist()]
        return []  # the table is written by finish

    def finish(self, output: Path, names: list[str]) -> None:
        rows = [self.rows[name] for name in names]
        classes = len(rows[0]) - 2 if rows else 0
        with (output / "classes.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["image", "class", *(f"p{k}" for k in range(classes))])
            writer.writerows(rows)
