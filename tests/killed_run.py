"""A run killed mid-epoch and resumed, beside the same run uninterrupted: the harness of the
exact-resume tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from code.engine.checkpoint import Checkpointer, load_checkpoint
from code.main import main
from tests.small_run import REPO_ROOT


@dataclass(frozen=True)
class KilledAndWhole:
    """The two runs' folders and reports, and the progress saved where the kill struck."""

    whole: Path
    killed: Path
    whole_report: dict
    resumed_report: dict
    saved_at_kill: dict[str, Any]


def kill_and_resume(config: str, opts: list[str], tmp_path: Path) -> KilledAndWhole:
    """Train ``config`` with ``opts`` in a subprocess killed (SIGKILL) at its first checkpoint,
    while the same run trains here uninterrupted; then resume the killed one here."""
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    command = [sys.executable, "-m", "code.main", "--cfg", config, "--opts", *opts,
               "OUTPUT_DIR", str(killed)]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    killer = threading.Thread(target=_kill_at_first_checkpoint, args=(process, killed))
    killer.start()
    try:
        report = main(["--cfg", config, "--opts", *opts, "OUTPUT_DIR", str(whole)])
    finally:
        killer.join()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    saved = load_checkpoint(Checkpointer(killed).last)["train_state"]
    resumed = main(["--cfg", config, "--resume", "--opts", *opts, "OUTPUT_DIR", str(killed)])
    return KilledAndWhole(whole, killed, report, resumed, saved)


def assert_same_ends(runs: KilledAndWhole) -> None:
    """Both runs end with bitwise the same weights, optimizer and progress, and logged the same
    metrics."""
    ends = [load_checkpoint(Checkpointer(folder).last) for folder in (runs.whole, runs.killed)]
    for part in ("model", "optimizer"):
        a, b = (_leaves(end[part]) for end in ends)
        assert len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True)), part
    assert ends[0]["train_state"] == ends[1]["train_state"]
    assert _log(runs.whole) == _log(runs.killed)


def _kill_at_first_checkpoint(process: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 240
    while not Checkpointer(folder).last.exists() and process.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _leaves(tree: Any) -> list[Any]:
    """The values of nested dicts and lists (a state dict), in order."""
    if isinstance(tree, dict):
        return [leaf for key in tree for leaf in _leaves(tree[key])]
    if isinstance(tree, list | tuple):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]


def _equal(a: Any, b: Any) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def _log(folder: Path) -> list[dict]:
    """metrics.jsonl without the speeds (which differ between runs)."""
    records = map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]
