"""What a task is: the run-level part ``TASK.NAME`` chooses (detectron2's meta-architecture).

A task owns what a run does beyond the shared machinery (entry point, strict config, DDP,
logging, outputs folder, run info, trainer): which data and items it needs and so which batch
fields its batches hold, the model it builds, the metrics it validates on (``TRAIN.BEST_METRIC``
names one), its final evaluation and the layout of ``metrics.json``, the pictures it draws, and
what ``code.predict`` writes for it. ``code.main`` runs every task the same way::

    task.check(); task.prepare(); model = task.build_model()
    if task.trains: Trainer(..., scorer=lambda: task.validation(model)).fit()
    report = task.evaluate(model, ...); task.summary(report); task.save_figures(model, ...)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from yacs.config import CfgNode

from code.config import SCHEMA
from code.data.batch import Batch, Fields
from code.data.build import (
    SPLITS,
    DataSplits,
    build_loader,
    build_samples,
    build_splits,
    load_dataset,
    split_sizes,
)
from code.engine.trainer import ValidationScorer
from code.models.build import GazeModel, build_model
from code.models.shapes import PredictionKind
from code.registry import TASKS, Chain, Choice, ConfigError
from code.utils.parallel import Write


class Predictor:
    """What ``code.predict`` does for a trained model of its task.

    ``code.predict`` reads each image, makes its model input with ``batch`` and predicts the
    images whose inputs have one size together: ``predict`` gets their batches concatenated, on
    the model's device, under ``torch.no_grad``, and returns the writes that save their outputs;
    ``code.predict`` runs those (on a writer thread by default) and, once every image's are done,
    calls ``finish``.
    """

    def batch(self, image: np.ndarray, name: str) -> Batch:
        """The model's input for ``image`` (H, W, 3 uint8, file ``name``): a batch of one, on
        the CPU (e.g. ``image_batch`` of the image resized to the task's size). The batches of
        inputs of one size must hold the same fields in the same shapes, to be concatenated."""
        raise NotImplementedError

    def predict(
        self, batch: Batch, images: list[np.ndarray], names: list[str], output: Path
    ) -> list[Write]:
        """Run the model on ``batch``, item i made from ``images[i]`` (file ``names[i]``); return
        the writes of their outputs into ``output`` (make the folders here). A write may run
        later on another thread: it must own what it saves (no array changed afterwards)."""
        raise NotImplementedError

    def finish(self, output: Path, names: list[str]) -> None:
        """Write what gathers every image's outputs (e.g. one table, a row per image in the
        input order of ``names``), once all are predicted and written; nothing by default."""


class Task:
    """A run's task; see the module docstring for what ``code.main`` calls, and in which order.

    Constructed from the configuration alone (no data is read), so ``code.predict`` can build a
    checkpoint's task cheaply. ``trains``: whether the run trains its model (a task may only
    evaluate or generate, e.g. from frozen models).
    """

    trains: bool
    loaders: dict[str, torch.utils.data.DataLoader]  # train/val/test, set by ``prepare``

    def check(self) -> None:
        """Everything that can be checked before any data is read (raise ``ConfigError``)."""

    def prepare(self) -> None:
        """Load the data and make the loaders (``self.loaders``)."""
        raise NotImplementedError

    def build_model(self) -> GazeModel:
        """The configured model, checked against the data ``prepare`` made."""
        raise NotImplementedError

    def validation(self, model: GazeModel) -> ValidationScorer:
        """A fresh scorer of the task's validation metrics for ``model``'s predictions."""
        raise NotImplementedError

    def evaluate(self, model: GazeModel, device: torch.device, output_dir: Path) -> dict | None:
        """The final evaluation: the content of ``metrics.json`` on rank 0, None elsewhere."""
        raise NotImplementedError

    def summary(self, report: dict) -> str:
        """The report as a table for the log."""
        raise NotImplementedError

    def save_figures(
        self, model: GazeModel, device: torch.device, output_dir: Path, report: dict
    ) -> None:
        """Pictures of the final model on the test data, ``report`` being its evaluation (rank
        0 only); none by default."""

    @classmethod
    def add_predict_options(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        """Command-line options of ``code.predict`` for this task's models; none by default."""

    def predictor(
        self, model: GazeModel, device: torch.device, options: argparse.Namespace
    ) -> Predictor:
        """What ``code.predict`` runs on the images (``options``: its parsed command line)."""
        raise NotImplementedError


def build_task(cfg: CfgNode) -> Task:
    return TASKS.build(cfg.TASK, cfg=cfg)


def checked_model(cfg: CfgNode, fields: Fields, predicts: Callable[[PredictionKind], bool],
                  what: str) -> GazeModel:  # fmt: skip
    """The configured model, refused unless its prediction is one ``predicts`` accepts (the
    task ``what``: e.g. "reconstructs images") and the data provides the fields it reads."""
    model = build_model(cfg)
    if not predicts(model.prediction):
        raise ConfigError(
            f"task {cfg.TASK.NAME!r} {what}; MODEL.DECODER.NAME {cfg.MODEL.DECODER.NAME!r} "
            f"predicts {model.prediction.value}"
        )
    check_batch_fields(model, fields, cfg)
    return model


def check_batch_fields(model: GazeModel, fields: Fields, cfg: CfgNode) -> None:
    """Refuse a model whose parts read batch fields the run's data does not provide, naming the
    parts and the configuration choices that would provide each field."""
    lacking = {
        node: sorted(part.requires - fields.keys())
        for node, part in model.parts().items()
        if part.requires - fields.keys()
    }
    if not lacking:
        return
    parts = [f"MODEL.{node}.NAME {cfg.MODEL[node].NAME!r} reads {', '.join(f)}"
             for node, f in lacking.items()]  # fmt: skip
    missing = sorted({field for f in lacking.values() for field in f})
    hints = [f"{field}: {' or '.join(providers(field)) or 'no configurable part'}"
             for field in missing]  # fmt: skip
    raise ConfigError(
        f"{'; '.join(parts)}, which the data of task {cfg.TASK.NAME!r} does not provide "
        f"(it has {', '.join(sorted(fields))}). Provided by: {'; '.join(hints)}"
    )


def providers(field: str) -> list[str]:
    """The configuration choices whose part adds ``field`` to the batch (its ``provides``)."""
    return [
        f"{key}.{'NAME' if isinstance(node, Choice) else 'NAMES'} {name}"
        for key, node in _part_nodes(SCHEMA, "")
        for name in node.registry.names()
        if field in {f.name for f in getattr(node.registry.get(name), "provides", ())}
    ]


def _part_nodes(schema: dict, prefix: str) -> Iterator[tuple[str, Choice | Chain]]:
    for key, value in schema.items():
        if isinstance(value, Choice | Chain):
            yield prefix + key, value
        elif isinstance(value, dict):
            yield from _part_nodes(value, f"{prefix}{key}.")


def image_batch(resized: np.ndarray, original_size: tuple[int, int]) -> Batch:
    """A batch of one image for ``code.predict``: ``resized`` (H, W, 3 uint8, at the model's
    input size) as ``input``, with the image's ``original_size`` (height, width)."""
    return Batch(
        input=torch.tensor(resized).permute(2, 0, 1)[None].float().div(255),
        image_index=torch.zeros(1, dtype=torch.int64),
        original_size=torch.tensor([original_size]),
    )


def input_size(height: int, width: int, trained: tuple[int, int]) -> tuple[int, int]:
    """(height, width) with the aspect of an image and about the trained pixel count."""
    scale = math.sqrt(trained[0] * trained[1] / (height * width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def image_data(
    cfg: CfgNode, splits: DataSplits | None = None
) -> tuple[DataSplits, dict[str, Any], dict[str, Any]]:
    """Splits, items and loaders of a task that needs only the images (no centre bias, no
    segments): what ``prepare`` sets as ``splits``, ``samples`` and ``loaders``. ``splits``:
    the task's own (by default ``DATA.SPLIT`` of ``DATA.DATASET``)."""
    splits = splits or build_splits(cfg, load_dataset(cfg))
    split_sizes(splits)
    samples = {
        name: build_samples(
            cfg, getattr(splits, name), name, None, None, transformed=name == "train"
        )
        for name in SPLITS
    }
    loaders = {name: build_loader(cfg, samples[name], name == "train") for name in SPLITS}
    return splits, samples, loaders
