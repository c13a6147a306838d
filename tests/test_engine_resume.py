"""A run killed (SIGKILL) after a checkpoint, then resumed, ends with the uninterrupted weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from code.engine.checkpoint import load_checkpoint
from code.main import main
from tests.small_run import QUICKSTART, REPO_ROOT, SMALL

# Two epochs of eight steps, last.pt every three steps: the first lands mid-epoch.
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
    while not (killed / "last.pt").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    saved = load_checkpoint(killed / "last.pt")["train_state"]
    assert saved["step"] < 16, "the run finished before it could be killed"
    main(["--cfg", QUICKSTART, "--resume", "--opts", *OPTS, "OUTPUT_DIR", str(killed)])
    whole, resumed = _weights(tmp_path / "whole" / "last.pt"), _weights(killed / "last.pt")
    diff = max((whole[k] - resumed[k]).abs().max().item() for k in whole)
    print(f"killed at step {saved['step']}; max |uninterrupted - resumed| = {diff:.3g}")
    assert diff == 0.0
    # The log reads as one run: what the killed run logged after its checkpoint was dropped.
    logs = [(d / "metrics.jsonl").read_text() for d in (tmp_path / "whole", killed)]
    assert [len(log.splitlines()) for log in logs] == [len(logs[0].splitlines())] * 2
