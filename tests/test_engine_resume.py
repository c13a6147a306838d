"""A run killed (SIGKILL) after a checkpoint, then resumed, ends as the uninterrupted run does:
same weights, and with random numbers drawn every step, the same random streams."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from code.engine.checkpoint import Checkpointer, load_checkpoint, save_checkpoint
from code.engine.reproducibility import all_rng_states, seed_everything, set_rng_state
from code.main import main
from tests.killed_run import assert_same_ends, kill_and_resume
from tests.small_run import QUICKSTART, REPO_ROOT, SMALL

# Two epochs of eight steps, the last checkpoint every three steps: the first lands mid-epoch.
OPTS = [*SMALL, "TRAIN.EPOCHS", "2", "TRAIN.CHECKPOINT_EVERY", "3"]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    main(["--cfg", QUICKSTART, "--opts", *OPTS, "OUTPUT_DIR", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "code.main", "--cfg", QUICKSTART, "--opts", *OPTS,
               "OUTPUT_DIR", str(killed)]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not Checkpointer(killed).last.exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    saved = load_checkpoint(Checkpointer(killed).last)["train_state"]
    assert saved["step"] < 16, "the run finished before it could be killed"
    main(["--cfg", QUICKSTART, "--resume", "--opts", *OPTS, "OUTPUT_DIR", str(killed)])
    whole = _weights(Checkpointer(tmp_path / "whole").last)
    resumed = _weights(Checkpointer(killed).last)
    diff = max((whole[k] - resumed[k]).abs().max().item() for k in whole)
    print(f"killed at step {saved['step']}; max |uninterrupted - resumed| = {diff:.3g}")
    assert diff == 0.0
    # The log reads as one run: what the killed run logged after its checkpoint was dropped.
    logs = [(d / "metrics.jsonl").read_text() for d in (tmp_path / "whole", killed)]
    assert [len(log.splitlines()) for log in logs] == [len(logs[0].splitlines())] * 2


# Every training step draws random numbers from torch's generator: the input stage hides a new
# random half of the 6 x 6 patches of every image (training masks come from the global stream;
# validation masks are seeded per image); the training items are flipped at random as well.
RANDOM_EVERY_STEP = [
    *SMALL,
    "TRAIN.EPOCHS", "2",
    "TRAIN.CHECKPOINT_EVERY", "1",
    "MODEL.INPUT_STAGE.NAME", "random_patches",
    "MODEL.INPUT_STAGE.RANDOM_PATCHES.RATIO", "0.5",
    "MODEL.INPUT_STAGE.RANDOM_PATCHES.PATCH_SIZE", "6",
    "MODEL.INPUT_STAGE.RANDOM_PATCHES.FILL", "mean",
    "MODEL.INPUT_STAGE.RANDOM_PATCHES.BLUR_SIGMA", "1.0",
    "DATA.TRANSFORMS.NAMES", "[hflip]",
    "DATA.TRANSFORMS.HFLIP.PROBABILITY", "0.5",
]  # fmt: skip


def test_a_run_drawing_random_numbers_every_step_resumes_bitwise(tmp_path: Path) -> None:
    """Killed mid-epoch and resumed, a run whose every step draws random numbers ends with the
    uninterrupted run's weights, optimizer state, logged metrics and test report, bitwise.

    Catches a resume that does not restore torch's random state (the resumed steps would hide
    other patches), a checkpoint that saves it at another point, a training loader drawing its
    workers' seed from the global stream instead of its own generator (a resumed epoch would
    start the stream one draw off), and a sampler not put back at the consumed batch."""
    runs = kill_and_resume(QUICKSTART, RANDOM_EVERY_STEP, tmp_path)
    saved = runs.saved_at_kill
    assert saved["epoch"] < 2 and saved["batches_consumed"] > 0, f"not mid-epoch: {saved}"
    print(f"killed after step {saved['step']} (epoch {saved['epoch'] + 1})")
    assert_same_ends(runs)
    for key in ("metrics", "per_image"):
        assert runs.whole_report[key] == runs.resumed_report[key]


def test_a_checkpoints_random_state_restores_every_stream(tmp_path: Path) -> None:
    """The states a checkpoint stores, read back, restore python's, numpy's and torch's streams
    (no part of a training run draws from python's or numpy's today, so the run above cannot
    tell). Catches a stream left out of ``rng_state`` or ``set_rng_state``, or one the checkpoint
    cannot carry."""

    def draws() -> tuple[float, float, float]:
        return random.random(), float(np.random.random()), torch.rand(()).item()

    outside = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        seed_everything(3)
        draws()  # somewhere in the streams, not at their seeds
        save_checkpoint({"model": {}, "rng": all_rng_states()}, tmp_path / "state.pt")
        expected = draws()
        draws()
        set_rng_state(load_checkpoint(tmp_path / "state.pt")["rng"][0])
        got = draws()
    finally:  # the other tests of this process keep their streams
        random.setstate(outside[0])
        np.random.set_state(outside[1])
        torch.set_rng_state(outside[2])
    assert [a == b for a, b in zip(got, expected, strict=True)] == [True, True, True]
