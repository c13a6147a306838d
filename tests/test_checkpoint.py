"""Checkpoints are data: a crafted pickle is refused before it runs, files that are no checkpoint
are named, what the trainer writes (numpy's random state, a scheduler's Counter) loads, and a
write reaches the disk before the rename that publishes it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from yacs.config import CfgNode

from code.engine import checkpoint
from code.engine.checkpoint import Checkpointer, Training, load_checkpoint, save_checkpoint
from code.engine.reproducibility import rng_state, set_rng_state
from code.engine.trainer import TrainState


class _CreatesAFile:
    """Unpickling this object calls ``open(target, "w")``: code a checkpoint must not run."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (open, (str(self.target), "w"))


def test_a_checkpoint_whose_unpickling_runs_code_is_refused_and_the_code_does_not_run(
    tmp_path: Path,
) -> None:
    target = tmp_path / "created_by_the_pickle"
    path = tmp_path / "shared.pt"
    torch.save({"model": {}, "config": "", "payload": _CreatesAFile(target)}, path)
    with pytest.raises(ValueError, match=r"shared\.pt: refused to load.*io\.open"):
        load_checkpoint(path)
    assert not target.exists()


def test_what_the_trainer_writes_loads_as_data_and_restores_the_random_streams(
    tmp_path: Path,
) -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 2, 5])
    np.random.seed(3)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": [rng_state()], "config": "SEED: 0\n",
             "train_state": {"epoch": 1, "best": None}}  # fmt: skip
    expected = np.random.rand(3)
    save_checkpoint(state, Checkpointer(tmp_path).last)
    loaded = load_checkpoint(Checkpointer(tmp_path).last)
    assert loaded["scheduler"]["milestones"] == {2: 2, 5: 1}  # a Counter
    torch.testing.assert_close(loaded["model"]["weight"], model.weight.detach())
    set_rng_state(loaded["rng"][0])
    np.testing.assert_array_equal(np.random.rand(3), expected)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("SEED: 0\n", "not a checkpoint"),  # code.predict --checkpoint config.yaml
        (None, "not a saccade checkpoint.*found \\['weight'\\]"),  # bare weights
    ],
)
def test_a_file_that_is_no_checkpoint_is_named(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "some.file"
    if content is None:
        torch.save({"weight": torch.zeros(2)}, path)
    else:
        path.write_text(content)
    with pytest.raises(ValueError, match=f"some\\.file: {message}"):
        load_checkpoint(path)


def test_a_checkpoint_is_on_disk_before_it_replaces_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(
        checkpoint.os, "replace", lambda a, b: events.append("replace") or real_replace(a, b)
    )
    save_checkpoint({"model": {}}, Checkpointer(tmp_path).last)
    # the file's data, then the rename, then the folder entry
    assert events == ["fsync", "replace", "fsync"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [Checkpointer.LAST]


class _Sampler:
    """A training batch sampler's checkpoint interface: its position is the batches consumed."""

    def __init__(self) -> None:
        self.position: int | None = None

    def state_dict(self, batches_consumed: int) -> dict:
        return {"position": batches_consumed}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


def _training(seed: int, steps: int) -> Training:
    """A small model's training parts after ``steps`` steps (momentum buffers, a decayed LR)."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(steps):
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return Training(model, optimizer, scheduler, scaler, _Sampler(), CfgNode({"SEED": 0}), {})


def test_the_checkpointer_resumes_what_it_saved_and_refuses_another_process_count(
    tmp_path: Path,
) -> None:
    """Catches a part of the training state that ``save`` writes and ``resume`` does not put
    back (weights, optimizer, schedule, sampler position, progress), a best checkpoint written
    when the epoch was no improvement, and a resume by another number of processes than wrote
    the checkpoint (each needs its own random stream)."""
    checkpoints = Checkpointer(tmp_path)
    saved = _training(seed=0, steps=2)
    checkpoints.save(saved, TrainState(epoch=1, batches_consumed=3, step=7), best=True)
    best = checkpoints.best.read_bytes()
    progress = TrainState(epoch=2, batches_consumed=5, step=9, best=0.5)
    checkpoints.save(saved, progress, best=False)
    assert checkpoints.best.read_bytes() == best and checkpoints.can_resume()
    resumed = _training(seed=1, steps=0)
    assert checkpoints.resume(resumed, TrainState) == progress
    for name in ("model", "optimizer", "scheduler"):
        want, got = (str(getattr(t, name).state_dict()) for t in (saved, resumed))
        assert got == want, name
    assert resumed.sampler.position == 5
    state = load_checkpoint(checkpoints.last)
    save_checkpoint({**state, "rng": state["rng"] * 2}, checkpoints.last)
    refused = rf"{re.escape(str(checkpoints.last))} was written by 2 process\(es\), this run has 1"
    with pytest.raises(ValueError, match=refused):
        checkpoints.resume(_training(seed=1, steps=0), TrainState)
