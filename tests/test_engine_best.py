"""The best checkpoint holds the epoch of the best validation metric, and the reported numbers
come from it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from code.engine.checkpoint import Checkpointer, load_checkpoint
from code.main import main
from tests.small_run import QUICKSTART, SMALL

# Two epochs at the quickstart's LR raise val_ig; then the LR is multiplied by 30, which wrecks
# the model in the third: val_ig goes up, then down (best in the middle, worst at the end).
SPIKE = [
    "TRAIN.SCHEDULER.NAME", "multistep",
    "TRAIN.SCHEDULER.MULTISTEP.MILESTONES", "[2]",
    "TRAIN.SCHEDULER.MULTISTEP.GAMMA", "30.0",
]  # fmt: skip


def _run(output: Path, epochs: int) -> dict:
    opts = [*SMALL, *SPIKE, "TRAIN.EPOCHS", str(epochs), "OUTPUT_DIR", str(output)]
    return main(["--cfg", QUICKSTART, "--opts", *opts])


def _epochs(output: Path) -> list[dict]:
    records = map(json.loads, (output / "metrics.jsonl").read_text().splitlines())
    return [record for record in records if record["kind"] == "epoch"]


def test_best_pt_holds_the_epoch_of_the_highest_val_ig_and_is_what_is_scored(
    tmp_path: Path,
) -> None:
    """Catches the best checkpoint chosen with the comparison flipped (lowest val_ig: the third
    epoch here), or simply the last epoch, or never replaced after the first; and a report scored
    on another checkpoint than the best. The weights are checked against an independent run
    stopped after the best epoch, whose last checkpoint must be bitwise the first run's best."""
    whole = tmp_path / "three_epochs"
    report = _run(whole, epochs=3)
    epochs = _epochs(whole)
    val_ig = [record["val_ig"] for record in epochs]
    best = max(range(len(val_ig)), key=val_ig.__getitem__)
    worst = min(range(len(val_ig)), key=val_ig.__getitem__)
    print(f"val_ig per epoch: {val_ig}")
    # The history this test needs: the best epoch neither the first nor the last.
    assert 0 < best < len(val_ig) - 1 and worst != best, f"val_ig is monotone: {val_ig}"
    saved = load_checkpoint(Checkpointer(whole).best)
    assert saved["train_state"]["epoch"] == epochs[best]["epoch"] == best + 1
    assert saved["train_state"]["step"] == epochs[best]["step"]
    assert report["checkpoint"] == str(Checkpointer(whole).best)

    stopped = tmp_path / "stopped_at_the_best_epoch"
    stopped_report = _run(stopped, epochs=best + 1)
    assert [r["val_ig"] for r in _epochs(stopped)] == val_ig[: best + 1]  # the same run so far
    reference = load_checkpoint(Checkpointer(stopped).last)["model"]
    assert reference.keys() == saved["model"].keys()
    assert all(torch.equal(reference[k], saved["model"][k]) for k in reference)
    # ... and the test-set numbers of the longer run are those of the best epoch's weights
    assert report["metrics"] == stopped_report["metrics"]
    assert report["per_image"] == stopped_report["per_image"]
