"""A new task is new parts plus a config: a task and a decoder defined in this file run through
``code.main`` and ``code.predict`` with no edit to either, to the trainer or to the engine."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from code.data.batch import Batch
from code.engine.checkpoint import Checkpointer
from code.engine.trainer import ValidationScorer
from code.main import main
from code.models.base import Decoder
from code.models.build import GazeModel, build_model
from code.models.layers.feature_maps import concat_on_grid, finest_stride
from code.models.shapes import FeatureShapes, PredictionKind
from code.predict import main as predict
from code.registry import DECODERS, TASKS
from code.tasks.base import Predictor, Task, check_batch_fields, image_data
from code.utils.parallel import Write
from tests.small_run import QUICKSTART, SMALL


def brighter_half(images: torch.Tensor) -> torch.Tensor:
    """(B,) 1 where the right half of each (B, 3, H, W) image is brighter than the left, else 0."""
    half = images.shape[-1] // 2
    return (images[..., half:].mean((1, 2, 3)) > images[..., :half].mean((1, 2, 3))).long()


class HalvesHead(Decoder):
    """Which half of the image is brighter: a 1x1 readout averaged over each half -> 2 logits."""

    prediction = PredictionKind.CLASS_LOGITS
    requires = frozenset({"target"})

    def __init__(self, input_shapes: FeatureShapes) -> None:
        super().__init__()
        self.input_shapes = input_shapes
        self.stride = finest_stride(input_shapes)
        self.readout = nn.Conv2d(sum(s.channels for s in input_shapes.values()), 1, 1)

    def forward(self, features: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        grid = concat_on_grid(features, self.input_shapes, self.stride, batch.input.shape[-2:])
        score = self.readout(grid)[:, 0]
        half = score.shape[-1] // 2
        return torch.stack([score[..., :half].mean((1, 2)), score[..., half:].mean((1, 2))], 1)

    def loss(self, prediction: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        labels = brighter_half(batch.target)
        return F.cross_entropy(prediction, labels, reduction="sum"), torch.tensor(len(labels))


class AccuracyScorer(ValidationScorer):
    def __init__(self) -> None:
        self.higher_is_better = {"val_accuracy": True}
        self.sums = torch.zeros(2, dtype=torch.float64)

    def update(self, prediction: torch.Tensor, batch: Batch) -> None:
        right = (prediction.argmax(1) == brighter_half(batch.target)).sum()
        self.sums += torch.tensor([float(right), float(len(batch))], dtype=torch.float64)

    def state(self) -> torch.Tensor:
        return self.sums

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        return {"val_accuracy": float(state[0] / state[1])}


class HalvesPredictor(Predictor):
    def __init__(self, model: GazeModel, cfg: CfgNode) -> None:
        self.model, self.cfg = model, cfg

    def batch(self, image: np.ndarray, name: str) -> Batch:
        size = tuple(self.cfg.DATA.IMAGE_SIZE)
        pixels = torch.tensor(image).permute(2, 0, 1)[None].float().div(255)
        pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
        return Batch(pixels, torch.zeros(1, dtype=torch.int64), torch.tensor([image.shape[:2]]))

    def predict(
        self, batch: Batch, images: list[np.ndarray], names: list[str], output: Path
    ) -> list[Write]:
        logits, _ = self.model(batch)
        sides = [["left", "right"][int(k)] for k in logits.argmax(1)]
        return [functools.partial((output / f"{Path(name).stem}.json").write_text,
                                  json.dumps({"brighter": side}))
                for name, side in zip(names, sides, strict=True)]  # fmt: skip


class HalvesTask(Task):
    """Train the head to tell which image half is brighter; report test accuracy."""

    trains = True

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg

    def prepare(self) -> None:
        self.splits, self.samples, self.loaders = image_data(
            self.cfg
        )  # images only: no centre bias

    def build_model(self) -> GazeModel:
        model = build_model(self.cfg)
        check_batch_fields(model, self.samples["train"].fields, self.cfg)
        return model

    def validation(self, model: GazeModel) -> ValidationScorer:
        return AccuracyScorer()

    @torch.no_grad()
    def evaluate(self, model: GazeModel, device: torch.device, output_dir: Path) -> dict:
        scorer = AccuracyScorer()
        for batch in self.loaders["test"]:
            prediction, batch = model(batch.to(device))
            scorer.update(prediction, batch)
        return {"metrics": {"accuracy": scorer.compute(scorer.state())["val_accuracy"]}}

    def summary(self, report: dict) -> str:
        return f"accuracy {report['metrics']['accuracy']:.3f}"

    def predictor(
        self, model: GazeModel, device: torch.device, options: argparse.Namespace
    ) -> Predictor:
        return HalvesPredictor(model, self.cfg)


class MajorityHalfTask(HalvesTask):
    """No training: the accuracy of always answering the training images' majority half."""

    trains = False

    def evaluate(self, model: GazeModel, device: torch.device, output_dir: Path) -> dict:
        train, test = (torch.cat([brighter_half(b.target) for b in self.loaders[split]])
                       for split in ("train", "test"))  # fmt: skip
        majority = int(train.float().mean() > 0.5)
        return {"metrics": {"accuracy": float((test == majority).float().mean())}}


@pytest.fixture
def halves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The toy parts registered for one test (the typed view and other tests never see them)."""
    TASKS.names(), DECODERS.names()  # the framework's own parts first
    monkeypatch.setitem(TASKS._entries, "halves", HalvesTask)
    monkeypatch.setitem(TASKS._entries, "majority_half", MajorityHalfTask)
    monkeypatch.setitem(DECODERS._entries, "halves", HalvesHead)
    return [*SMALL, "TASK.NAME", "halves", "MODEL.DECODER.NAME", "halves",
            "DATA.SAMPLES.NAME", "image", "DATA.SAMPLES.IMAGE.SCANPATHS", "false",
            "DATA.SAMPLES.IMAGE.FOREGROUND_DIR", "null",
            "DATA.SAMPLES.IMAGE.DROP_WITHOUT_FOREGROUND", "false",
            "TRAIN.BEST_METRIC", "val_accuracy",
            "DATA.DATASET.GENERATED.NUM_IMAGES", "80"]  # fmt: skip


def test_a_task_defined_outside_the_framework_trains_evaluates_and_predicts(
    halves: list[str], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    report = main(["--cfg", QUICKSTART, "--opts", *halves, "OUTPUT_DIR", str(run),
                   "TRAIN.EPOCHS", "4"])  # fmt: skip
    labels = torch.cat([brighter_half(b.target) for b in _test_batches(halves)])
    majority = max(labels.float().mean(), 1 - labels.float().mean())
    assert report["metrics"]["accuracy"] > majority + 0.1, (report, majority)  # it learned
    assert json.loads((run / "metrics.json").read_text())["metrics"] == report["metrics"]
    epochs = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert "val_accuracy" in next(r for r in epochs if r["kind"] == "epoch")
    assert not (run / "val_overlays").exists()  # class logits have no picture
    images = tmp_path / "images"
    images.mkdir()
    bright_right = np.zeros((30, 40, 3), np.uint8)
    bright_right[:, 20:] = 230
    from PIL import Image

    Image.fromarray(bright_right).save(images / "right.png")
    Image.fromarray(bright_right[:, ::-1]).save(images / "left.png")  # one batch with right.png
    result = predict(["--checkpoint", str(Checkpointer(run).best), "--input", str(images),
                      "--output", str(tmp_path / "out")])  # fmt: skip
    assert result["written"] == ["left.png", "right.png"]
    for side in ("left", "right"):
        assert json.loads((tmp_path / "out" / f"{side}.json").read_text()) == {"brighter": side}


def test_a_task_without_training_runs_through_the_same_entry_point(
    halves: list[str], tmp_path: Path
) -> None:
    """The report carries the task's own number: the test share of the training images'
    majority half (64 images: 19 of 45 training images brighter on the right, so the left;
    5 of the 13 test images are). Fails for the minority half, the test split's own majority
    (the right), or another split."""
    opts = [*halves, "DATA.DATASET.GENERATED.NUM_IMAGES", "64"]
    run = tmp_path / "majority"
    report = main(["--cfg", QUICKSTART, "--opts", *opts, "TASK.NAME", "majority_half",
                   "OUTPUT_DIR", str(run)])  # fmt: skip
    train, test = (torch.cat([brighter_half(b.target) for b in _test_batches(opts, split)])
                   for split in ("train", "test"))  # fmt: skip
    assert (int(train.sum()), len(train), int(test.sum()), len(test)) == (19, 45, 8, 13)
    assert report["metrics"]["accuracy"] == pytest.approx(5 / 13, abs=1e-7)  # a float32 mean
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "run_info.json", "metrics.json"}
    assert not Checkpointer(run).best.exists() and not (run / "metrics.jsonl").exists()


def test_a_best_metric_the_task_does_not_validate_on_is_refused(
    halves: list[str], tmp_path: Path
) -> None:
    from code.registry import ConfigError

    with pytest.raises(ConfigError, match=r"TRAIN.BEST_METRIC 'val_ig' .* it has val_loss, "
                       "val_accuracy"):  # fmt: skip
        main(["--cfg", QUICKSTART, "--opts", *halves, "TRAIN.BEST_METRIC", "val_ig",
              "OUTPUT_DIR", str(tmp_path)])  # fmt: skip


def _test_batches(opts: list[str], split: str = "test") -> list[Batch]:
    from code.config import load_config

    task = HalvesTask(load_config(QUICKSTART, opts))
    task.prepare()
    return list(task.loaders[split])
