"""The attention benchmark's helpers: the exponent fit, the CPU memory measure, the skip
projection, and a tiny run of the whole script (tables, skipped sizes, plot)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.attention import (
    fitted_exponent,
    main,
    parse_size,
    peak_of,
    profiled,
    projected_bytes,
)

CPU = torch.device("cpu")
MIB = 2**20


def test_the_fit_recovers_a_known_exponent() -> None:
    tokens = [196, 256, 576, 1024, 1900, 2304, 4096]
    assert fitted_exponent(tokens, [3.0 * n**1.5 for n in tokens]) == pytest.approx(1.5)
    # a constant beside the linear term bends the curve: the fit sees less than linear growth
    assert fitted_exponent(tokens, [1e4 + n for n in tokens]) < 0.5
    with pytest.raises(ValueError, match="two sizes"):
        fitted_exponent([256], [1.0])


def test_the_peak_is_the_highest_running_sum_of_allocations() -> None:
    assert peak_of([10, 5, -10, 20, -25]) == 25
    assert peak_of([-4, 3]) == 0  # freeing what was there before adds nothing
    assert peak_of([]) == 0


def test_the_profiled_peak_counts_the_bytes_of_tensors_alive_at_once() -> None:
    def step() -> None:
        a = torch.empty(2 * MIB, dtype=torch.uint8)
        b = torch.empty(MIB, dtype=torch.uint8)
        del a, b  # 3 MiB at once, then nothing
        c = torch.empty(MIB * 5 // 2, dtype=torch.uint8)
        del c

    _, peak, kernels = profiled(step, CPU)
    assert peak == 3 * MIB and kernels == set()


def test_the_math_path_is_seen_to_materialise_the_scores() -> None:
    q = torch.randn(1, 1, 512, 8, requires_grad=True)

    def step() -> None:
        F.scaled_dot_product_attention(q, q, q).sum().backward()
        q.grad = None

    with sdpa_kernel(SDPBackend.MATH):
        _, math_peak, math_kernels = profiled(step, CPU)
    _, default_peak, default_kernels = profiled(step, CPU)
    assert math_kernels == {"_scaled_dot_product_attention_math"}
    assert math_peak >= 512 * 512 * 4  # at least one float32 N x N score matrix
    # the default (fused) kernel never holds the N x N scores: less than one score matrix
    assert default_kernels and default_kernels != math_kernels
    assert 0 < default_peak < 512 * 512 * 4 < math_peak


def test_the_projection_grows_quadratically_from_the_largest_measured_size() -> None:
    assert projected_bytes(1024, []) is None
    assert projected_bytes(1024, [(256, 10), (512, 100)]) == 400


def test_sizes_are_square_or_height_by_width() -> None:
    assert parse_size("512") == (512, 512) and parse_size("600x800") == (600, 800)
    for bad in ("0", "600x", "axb", "1x2x3"):
        with pytest.raises(Exception, match="S or HxW"):
            parse_size(bad)


def test_a_tiny_run_writes_its_tables_and_plot_and_reports_skipped_sizes(tmp_path: Path) -> None:
    results, plot = tmp_path / "RESULTS.md", tmp_path / "cost.png"
    # 2e-4 GiB (≈ 0.2 MiB) is below the tiny block's peak: every size after the first is skipped
    rows = main(["--sizes", "32", "16x32", "--ratio", "16x32", "32", "--repeats", "1",
                 "--max-gib", "2e-4", "--variants", "global", "global (math)",
                 "--results", str(results), "--plot", str(plot)])  # fmt: skip
    assert plot.stat().st_size > 0
    text = results.read_text()
    assert "<!-- benchmarks/attention.py: begin -->" in text and "GiB projected" in text
    for scope in ("block", "encoder"):
        assert [row.variant.label for row in rows[scope]] == ["global", "global (math)"]
        for row in rows[scope]:
            small, large = row.cells["16×32"], row.cells["32²"]
            assert small.peak_bytes > 0 and small.seconds > 0
            assert large.seconds is None and large.projected_bytes > small.peak_bytes
    kernels = {row.variant.label: row.kernels for row in rows["block"]}
    assert kernels["global (math)"] == {"_scaled_dot_product_attention_math"}
