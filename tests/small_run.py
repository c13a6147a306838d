"""A quickstart shrunk to seconds: the configuration overrides engine tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

QUICKSTART = "configs/quickstart.yaml"
REPO_ROOT = Path(__file__).resolve().parents[1]

# 46 images: 32 train (a multiple of 2 x 4 and of 8), 5 val, 9 test; 36 x 48 pixels.
SMALL = [
    "DATA.DATASET.GENERATED.NUM_IMAGES", "46",
    "DATA.DATASET.GENERATED.HEIGHT", "36",
    "DATA.DATASET.GENERATED.WIDTH", "48",
    "DATA.IMAGE_SIZE", "[36, 48]",
    "DATA.BATCH_SIZE", "4",
    "TRAIN.EPOCHS", "2",
    "TRACKING.WANDB.ENABLED", "false",
    "TRACKING.VAL_OVERLAYS", "0",
    "EVAL.NUM_OVERLAYS", "0",
    "EVAL.CENTERBIAS_FOLDS", "3",  # the baseline for 9 test images
]  # fmt: skip


def torchrun(nproc: int, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``torchrun --nproc_per_node=nproc ARGS`` from the repository root, on CPU."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *args]  # fmt: skip
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
