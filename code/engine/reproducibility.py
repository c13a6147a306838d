"""Seeds, deterministic algorithms, random-number states for exact resume, and what a run ran on
(``run_info.json``, written and read back here)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import random
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from code.utils import distributed as dist

RECORDED_PACKAGES = ("torch", "numpy", "timm", "yacs", "scipy", "pillow", "lmdb", "wandb")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Ask torch for deterministic kernels (an error where an op has none) or allow fast ones."""
    if enabled:
        # cuBLAS is only deterministic with a fixed workspace; must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = not enabled


def rng_state() -> dict[str, Any]:
    """This process's random-number states (python, numpy, torch CPU and CUDA)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def all_rng_states() -> list[dict[str, Any]]:
    """Every rank's states, indexed by rank (a collective: call on all ranks at once)."""
    if dist.world_size() == 1:
        return [rng_state()]
    states: list[Any] = [None] * dist.world_size()
    torch.distributed.all_gather_object(states, rng_state())
    return states


def run_info() -> dict[str, Any]:
    """The code (git commit, uncommitted changes) and software a run used, and how it was run."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    versions = {}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "command": sys.argv,
        "world_size": dist.world_size(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def recorded_command(run_info_file: Path) -> str:
    """The command that made a run, as a user types it, from its ``run_info.json``: the
    entry point's module under ``python -m`` (``command[0]`` is its file), or under
    ``torchrun --nproc_per_node=<world size>`` where the run had several processes (several
    machines' runs read as one machine with all their processes: the file records no more)."""
    try:
        info = json.loads(run_info_file.read_text())
        script, *arguments = info["command"]
        processes = info["world_size"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{run_info_file}: no command to read ({err!r})") from err
    parts = Path(script).with_suffix("").parts
    if not script.endswith(".py") or "code" not in parts:
        raise ValueError(f"{run_info_file}: {script} is no entry point of the code package")
    package = max(i for i, part in enumerate(parts) if part == "code")  # the path's last one
    module = ".".join(parts[package:])
    launcher = "python" if processes == 1 else f"torchrun --nproc_per_node={processes}"
    return f"uv run {launcher} -m {module} {shlex.join(arguments)}".rstrip()
