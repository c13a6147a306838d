"""The GPU step benchmark's code path, run on the CPU at a tiny size (it measures nothing
here: a GPU run fills benchmarks/RESULTS.md)."""

from __future__ import annotations

from benchmarks.gpu_step import main


def test_the_gpu_step_benchmark_trains_full_size_dinogaze_spade_and_counts_its_flops() -> None:
    (result,) = main(["--device", "cpu", "--archs", "vitb", "--heights", "28", "--compile", "off",
                      "--steps", "1"])  # fmt: skip
    assert result["size"] == (28, 42) and result["batch"] == 4
    # ViT-B/14 on 2x3 patches (+ the class token), three readout blocks: far more than 1 GFLOP
    # forward and backward, and the step did run
    assert result["tflop_step"] > 1e-3 and result["images_s"] > 0
