"""Checkpoints are data: a crafted pickle is refused before it runs, files that are no checkpoint
are named, what the trainer writes (numpy's random state, a scheduler's Counter) loads, and a
write reaches the disk before the rename that publishes it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from code.engine import checkpoint
from code.engine.checkpoint import load_checkpoint, save_checkpoint
from code.engine.reproducibility import rng_state, set_rng_state


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
    save_checkpoint(state, tmp_path / "last.pt")
    loaded = load_checkpoint(tmp_path / "last.pt")
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
    save_checkpoint({"model": {}}, tmp_path / "last.pt")
    # the file's data, then the rename, then the folder entry
    assert events == ["fsync", "replace", "fsync"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
