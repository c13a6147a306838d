"""A new task is new parts plus a config: the task example of docs/extending.md (a task, a
decoder and their config, from the page) and a task defined in this file run through
``code.main`` and ``code.predict`` with no edit to either, to the trainer or to the engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from code.config import load_config
from code.data.batch import Batch
from code.engine.checkpoint import Checkpointer
from code.main import main
from code.models.build import GazeModel
from code.predict import main as predict
from code.registry import TASKS
from code.tasks.base import Task
from tests.small_run import SMALL


@dataclass
class Halves:
    """The example, registered: its config, the options of a small run, its task class and
    its labels (1 where an image's right half is brighter)."""

    config: Path
    opts: list[str]
    task: type[Task]
    brighter_half: Callable[[torch.Tensor], torch.Tensor]

    def batches(self, opts: list[str], split: str = "test") -> list[Batch]:
        task = self.task(load_config(self.config, [*self.opts, *opts]))
        task.prepare()
        return list(task.loaders[split])

    def labels(self, opts: list[str], split: str = "test") -> torch.Tensor:
        return torch.cat([self.brighter_half(b.target) for b in self.batches(opts, split)])


def majority_half_task(halves: Halves) -> type[Task]:
    """No training: the accuracy of always answering the training images' majority half."""

    class MajorityHalfTask(halves.task):
        trains = False

        def evaluate(self, model: GazeModel, device: torch.device, output_dir: Path) -> dict:
            train, test = (torch.cat([halves.brighter_half(b.target) for b in self.loaders[split]])
                           for split in ("train", "test"))  # fmt: skip
            majority = int(train.float().mean() > 0.5)
            return {"metrics": {"accuracy": float((test == majority).float().mean())}}

    return MajorityHalfTask


@pytest.fixture
def halves(docs_example) -> Halves:
    """The example's parts, and ``majority_half``, registered for one test (the typed view and
    other tests never see them)."""
    example = docs_example("task")
    found = Halves(
        config=example.config(),
        opts=[*SMALL, "DATA.DATASET.GENERATED.NUM_IMAGES", "80"],
        task=example.modules["code.tasks.halves"].HalvesTask,
        brighter_half=example.modules["code.models.decoders.halves"].brighter_half,
    )
    TASKS.register("majority_half")(majority_half_task(found))
    return found


def test_a_task_defined_outside_the_framework_trains_evaluates_and_predicts(
    halves: Halves, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    report = main(["--cfg", str(halves.config), "--opts", *halves.opts, "OUTPUT_DIR", str(run),
                   "TRAIN.EPOCHS", "4"])  # fmt: skip
    labels = halves.labels([])
    majority = max(labels.float().mean(), 1 - labels.float().mean())
    assert report["metrics"]["accuracy"] > majority + 0.1, (report, majority)  # it learned
    assert json.loads((run / "metrics.json").read_text())["metrics"] == report["metrics"]
    epochs = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert "val_accuracy" in next(r for r in epochs if r["kind"] == "epoch")
    assert not (run / "val_overlays").exists()  # class logits have no picture
    assert f"accuracy {report['metrics']['accuracy']:.3f}" in (run / "log.txt").read_text()
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
    halves: Halves, tmp_path: Path
) -> None:
    """The report carries the task's own number: the test share of the training images'
    majority half (64 images: 19 of 45 training images brighter on the right, so the left;
    5 of the 13 test images are). Fails for the minority half, the test split's own majority
    (the right), or another split."""
    opts = ["DATA.DATASET.GENERATED.NUM_IMAGES", "64"]
    run = tmp_path / "majority"
    report = main(["--cfg", str(halves.config), "--opts", *halves.opts, *opts,
                   "TASK.NAME", "majority_half", "OUTPUT_DIR", str(run)])  # fmt: skip
    train, test = (halves.labels(opts, split) for split in ("train", "test"))
    assert (int(train.sum()), len(train), int(test.sum()), len(test)) == (19, 45, 8, 13)
    assert report["metrics"]["accuracy"] == pytest.approx(5 / 13, abs=1e-7)  # a float32 mean
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "run_info.json", "metrics.json"}
    assert not Checkpointer(run).best.exists() and not (run / "metrics.jsonl").exists()


def test_a_best_metric_the_task_does_not_validate_on_is_refused(
    halves: Halves, tmp_path: Path
) -> None:
    from code.registry import ConfigError

    with pytest.raises(ConfigError, match=r"TRAIN.BEST_METRIC 'val_ig' .* it has val_loss, "
                       "val_accuracy"):  # fmt: skip
        main(["--cfg", str(halves.config), "--opts", *halves.opts, "TRAIN.BEST_METRIC", "val_ig",
              "OUTPUT_DIR", str(tmp_path)])  # fmt: skip
