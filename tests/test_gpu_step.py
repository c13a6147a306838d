"""The GPU step benchmark's code path, run on the CPU at a tiny size in a subprocess (bf16 on the
CPU is native code that could abort the process; it measures nothing here: a GPU run fills
benchmarks/RESULTS.md)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.small_run import REPO_ROOT


def test_the_gpu_step_benchmark_trains_full_size_dinogaze_spade_and_counts_its_flops() -> None:
    command = [sys.executable, "-m", "benchmarks.gpu_step", "--device", "cpu", "--archs", "vitb",
               "--heights", "28", "--compile", "off", "--steps", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0, f"exit status {run.returncode}:\n{run.stderr[-2000:]}"
    row = next(line for line in run.stdout.splitlines() if line.startswith("| vitb"))
    _, size, batch, mode, images_s, _, _, tflop, _ = (c.strip() for c in row.strip("|").split("|"))
    assert (size, batch, mode) == ("28×42", "4", "off")
    # ViT-B/14 on 2x3 patches (+ the class token), three readout blocks: far more than 1 GFLOP
    # forward and backward, and the step did run
    assert float(tflop) > 1e-3 and float(images_s) > 0
