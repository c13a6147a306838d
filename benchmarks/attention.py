"""Forward+backward time and peak memory of each attention mechanism against image resolution,
for one transformer block and for the whole hierarchical encoder, in one run.

    uv run python -m benchmarks.attention [--sizes 224 256 384 512 768 1024 600x800]
        [--ratio 256 1024] [--repeats 3] [--budget 10] [--max-gib 10] [--block-stage 2]
        [--variants global ...] [--device cpu|cuda] [--results benchmarks/RESULTS.md]
        [--plot docs/attention_cost.png]

The model is the CPU attention ablation's encoder, ``configs/06_attention/cpu_osie/<name>.yaml``
(SegFormer-style hierarchical transformer: overlapping patch embedding, Mix-FFN, stages at
strides 4, 8, 16 with 32, 64, 128 channels and 1, 2, 4 heads, depths 1, 1, 2), one file per
mechanism, so only ``ATTENTION.NAME`` and its options differ. Random weights, batch 1, float32,
training mode; a size is ``S`` (S x S) or ``HxW`` (600x800: OSIE's 800x600 images).

- ``block``: the last block of stage ``--block-stage`` (default 2: stride 16, 128 channels, 4
  heads; for ``shifted_window`` that block is a shifted one) on random (1, N, C) tokens that
  require gradients, as a block inside a network, N the image's grid at that stride. Stride 16
  rather than the first stage's 4: at stride 4 a 1024x1024 image has 65,536 tokens and the
  textbook global attention's N x N scores take 16 GiB per copy, which does not fit, so its
  growth from 256x256 to 1024x1024 could not be measured; the encoder rows cover stride 4.
- ``encoder``: the whole encoder on a random (1, 3, H, W) image, the loss the sum of its three
  maps; its token count is that of stage 0 (stride 4), the stage that dominates the cost.

``global`` runs as PyTorch's SDPA chooses (on the CPU a flash-attention kernel, whose memory is
linear in N); ``global (math)`` is the same model forced onto SDPA's math path
(``sdpa_kernel(SDPBackend.MATH)``), which materialises the N x N scores: the textbook cost. The
SDPA kernels each variant ran are read from the profiler and printed beside it.

Memory is the peak of the bytes allocated at once during the call above what was allocated
before it (activations saved for the backward, gradients, kernels' workspace, temporaries; not
the weights or the input). On the CPU it is summed, in order, from torch.profiler's memory
events (``profile_memory``: every allocation and free the CPU allocator makes for the calling
thread, which runs the forward and, for CPU tensors, the backward): the same bytes every run,
whatever the machine's load, though the flash kernel's buffers grow with the thread count. On
a GPU it is ``torch.cuda.max_memory_allocated`` above the allocation before the call.

Time is the fastest of a cell's calls: the first, profiled (the profiler only adds time), then
unprofiled ones up to ``--repeats`` calls while the cell's calls total under ``--budget``
seconds; CUDA events on a GPU. A size is skipped when its peak projected from the largest
measured size with N² growth (the steepest of any mechanism here) exceeds ``--max-gib``; the
table reports the projection. Per variant the script prints the time and memory ratios between
the two ``--ratio`` sizes and the exponent k of cost ∝ N^k fitted by least squares in log-log
over every measured size, writes its tables between its markers in ``--results`` and draws
``--plot``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import NullFormatter
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from yacs.config import CfgNode

from benchmarks.results import update_results
from code.config import load_config
from code.models.build import build_model
from code.models.encoders.hierarchical_transformer import HierarchicalTransformerEncoder
from code.utils.parallel import available_cpus

CONFIGS = Path("configs/06_attention/cpu_osie")
HEADING = "## Attention mechanisms: cost against resolution (`benchmarks/attention.py`)"
GIB = 2**30
MIB = 2**20
DEFAULT_SIZES = ["224", "256", "384", "512", "768", "1024", "600x800"]


@dataclass(frozen=True)
class Variant:
    label: str
    config: str  # the mechanism's file in CONFIGS
    math: bool = False  # SDPA forced onto its math path (materialised scores)


VARIANTS = [
    Variant("global", "global"),
    Variant("global (math)", "global", math=True),
    Variant("window", "window"),
    Variant("shifted_window", "shifted_window"),
    Variant("spatial_reduction", "spatial_reduction"),
    Variant("linear", "linear"),
    Variant("cross_covariance", "cross_covariance"),
]
SCOPES = ("block", "encoder")


@dataclass
class Cell:
    """One variant at one size: measured, or skipped with its projected peak."""

    tokens: int
    seconds: float | None = None
    peak_bytes: int | None = None
    projected_bytes: int | None = None
    calls: int = 0


@dataclass
class Row:
    """One variant in one scope: its cells by size label and the SDPA kernels it ran."""

    variant: Variant
    cells: dict[str, Cell] = field(default_factory=dict)
    kernels: set[str] = field(default_factory=set)


def parse_size(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"600x800"`` -> (600, 800), height first."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"a size is S or HxW in pixels, got {text!r}")
    height = int(parts[0])
    return height, int(parts[-1])


def size_label(size: tuple[int, int]) -> str:
    return f"{size[0]}²" if size[0] == size[1] else f"{size[0]}×{size[1]}"


def grid(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """The token grid of an image at ``stride``: ⌈H / stride⌉ × ⌈W / stride⌉, as the encoder's."""
    return -(-size[0] // stride), -(-size[1] // stride)


def peak_of(changes: Iterable[int]) -> int:
    """The highest running sum of allocation changes (+ allocated, − freed bytes), in order,
    above the level at the start (0 if nothing was ever allocated)."""
    level = peak = 0
    for change in changes:
        level += change
        peak = max(peak, level)
    return peak


def fitted_exponent(tokens: list[int], costs: list[float]) -> float:
    """k of cost ≈ c·N^k, by least squares on log cost against log N."""
    if len(tokens) < 2:
        raise ValueError(f"an exponent needs at least two sizes, got {len(tokens)}")
    slope, _ = np.polyfit(np.log(tokens), np.log(costs), 1)
    return float(slope)


def projected_bytes(tokens: int, measured: list[tuple[int, int]]) -> int | None:
    """The peak at ``tokens`` projected from the largest measured (tokens, bytes) with N²
    growth, an upper bound for every mechanism here; None before any size is measured."""
    if not measured:
        return None
    largest, peak = max(measured)
    return int(peak * (tokens / largest) ** 2)


def timed(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call of ``step`` (CUDA events on a GPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    start_s = time.perf_counter()
    step()
    return time.perf_counter() - start_s


def profiled(step: Callable[[], None], device: torch.device) -> tuple[float, int, set[str]]:
    """One call of ``step`` under the profiler: its seconds, its peak bytes above the start
    and the SDPA kernels it ran (forward names; their backward is implied)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=device.type == "cpu") as prof:
        seconds = timed(step, device)
    # The kineto events keep every allocation in order; prof.events() folds the allocations
    # into the ops that made them and loses that order.
    events = prof.profiler.kineto_results.events()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        memory = sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns())
        peak = peak_of(e.nbytes() for e in memory)
    kernels = {
        e.name().removeprefix("aten::")
        for e in events
        if e.name().startswith("aten::_scaled_dot_product") and "backward" not in e.name()
    }
    return seconds, peak, kernels


def measure(
    step: Callable[[], None], tokens: int, device: torch.device, repeats: int, budget: float
) -> tuple[Cell, set[str]]:
    """The profiled call, then timed calls up to ``repeats`` while their total is under
    ``budget`` seconds: the fastest time, the profiled peak and SDPA kernels."""
    seconds, peak, kernels = profiled(step, device)
    times = [seconds]
    while len(times) < repeats and sum(times) < budget:
        times.append(timed(step, device))
    return Cell(tokens, seconds=min(times), peak_bytes=peak, calls=len(times)), kernels


@functools.cache
def ablation_config(name: str) -> CfgNode:
    """The (frozen) ablation config of mechanism ``name``, read once: global's serves both of
    its variants, and validating a config takes seconds."""
    return load_config(CONFIGS / f"{name}.yaml", [])


def build_encoder(variant: Variant, device: torch.device) -> HierarchicalTransformerEncoder:
    """The ablation config's encoder for ``variant``, seeded, in training mode."""
    torch.manual_seed(0)
    return build_model(ablation_config(variant.config)).encoder.to(device).train()


def block_step(
    encoder: HierarchicalTransformerEncoder, stage: int, size: tuple[int, int], device: torch.device
) -> tuple[Callable[[], None], int]:
    """Forward+backward of stage ``stage``'s last block on the tokens of a ``size`` image, and
    their count. Gradients are freed inside the step, so each call starts as the first."""
    block = encoder.stages[stage].blocks[-1]
    stride = encoder.output_shapes[f"stage{stage}"].stride
    token_grid = grid(size, stride)
    channels = block.norm_attention.normalized_shape[0]
    tokens = torch.randn(1, token_grid[0] * token_grid[1], channels, device=device)
    tokens.requires_grad_(True)

    def step() -> None:
        block(tokens, token_grid).sum().backward()
        block.zero_grad(set_to_none=True)
        tokens.grad = None

    return step, tokens.shape[1]


def encoder_step(
    encoder: HierarchicalTransformerEncoder, size: tuple[int, int], device: torch.device
) -> tuple[Callable[[], None], int]:
    """Forward+backward of the whole encoder on a ``size`` image, and its stage-0 tokens."""
    image = torch.rand(1, 3, *size, device=device)
    stride = min(shape.stride for shape in encoder.output_shapes.values())

    def step() -> None:
        features = encoder(image)
        sum(feature.sum() for feature in features.values()).backward()
        encoder.zero_grad(set_to_none=True)

    rows, cols = grid(size, stride)
    return step, rows * cols


def run_variant(
    variant: Variant,
    encoder: HierarchicalTransformerEncoder,
    sizes: list[tuple[int, int]],
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Row]:
    """Both scopes of one variant at every size (ascending tokens), skipping sizes whose
    projected peak exceeds the limit."""
    if f"stage{args.block_stage}" not in encoder.output_shapes:
        raise SystemExit(
            f"--block-stage {args.block_stage}: the encoder of {CONFIGS / variant.config}.yaml "
            f"has the output stages {', '.join(encoder.output_shapes)}"
        )
    backend = sdpa_kernel(SDPBackend.MATH) if variant.math else contextlib.nullcontext()
    rows = {scope: Row(variant) for scope in SCOPES}
    with backend:
        for scope in SCOPES:
            row, measured = rows[scope], []
            for size in sizes:
                if scope == "block":
                    step, tokens = block_step(encoder, args.block_stage, size, device)
                else:
                    step, tokens = encoder_step(encoder, size, device)
                projection = projected_bytes(tokens, measured)
                if projection is not None and projection > args.max_gib * GIB:
                    row.cells[size_label(size)] = Cell(tokens, projected_bytes=projection)
                    print(f"  {scope:<7} {variant.label:<18} {size_label(size):>8}: skipped, "
                          f"{projection / GIB:.1f} GiB projected", flush=True)  # fmt: skip
                    continue
                cell, kernels = measure(step, tokens, device, args.repeats, args.budget)
                row.cells[size_label(size)], row.kernels = cell, row.kernels | kernels
                measured.append((tokens, cell.peak_bytes))
                print(f"  {scope:<7} {variant.label:<18} {size_label(size):>8}: "
                      f"{cell.seconds * 1e3:9.1f} ms, {cell.peak_bytes / MIB:9.1f} MiB "
                      f"({cell.calls} calls)", flush=True)  # fmt: skip
    return rows


def ratio(row: Row, sizes: tuple[str, str], value: Callable[[Cell], float | None]) -> float | None:
    """value at the second size / value at the first, if both were measured."""
    first, second = (row.cells.get(s) for s in sizes)
    if first is None or second is None or value(first) is None or value(second) is None:
        return None
    return value(second) / value(first)


def exponent(row: Row, value: Callable[[Cell], float | None]) -> str:
    """The fitted exponent over the row's measured sizes, formatted; — below two sizes."""
    measured = [c for c in row.cells.values() if value(c) is not None]
    if len(measured) < 2:
        return "—"
    return f"{fitted_exponent([c.tokens for c in measured], [value(c) for c in measured]):.2f}"


def seconds_of(cell: Cell) -> float | None:
    return cell.seconds


def bytes_of(cell: Cell) -> float | None:
    return None if cell.peak_bytes is None else float(cell.peak_bytes)


def kernels_text(row: Row) -> str:
    return ", ".join(f"`{k}`" for k in sorted(row.kernels)) or "— (no SDPA)"


def tables(rows: list[Row], ratio_sizes: tuple[str, str]) -> tuple[str, str]:
    """Markdown tables of one scope: time (ms) and peak memory (MiB) by size, with the ratio
    between the ratio sizes and the fitted exponent."""
    labels = list(rows[0].cells)
    header = " | ".join(f"{label} ({rows[0].cells[label].tokens:,})" for label in labels)
    arrow = f"{ratio_sizes[0]}→{ratio_sizes[1]}"
    time_lines = [f"| mechanism | {header} | {arrow} | exponent |",
                  "|---|" + "---:|" * (len(labels) + 2)]  # fmt: skip
    memory_lines = [f"| mechanism | {header} | {arrow} | exponent | SDPA kernel |",
                    "|---|" + "---:|" * (len(labels) + 2) + "---|"]  # fmt: skip
    for row in rows:
        times, memory = [], []
        for cell in row.cells.values():
            if cell.seconds is None:
                times.append("skipped")
                memory.append(f"skipped ({cell.projected_bytes / GIB:,.1f} GiB projected)")
            else:
                times.append(f"{cell.seconds * 1e3:,.1f}")
                memory.append(f"{cell.peak_bytes / MIB:,.1f}")
        time_ratio = ratio(row, ratio_sizes, seconds_of)
        memory_ratio = ratio(row, ratio_sizes, bytes_of)
        time_lines.append(
            f"| {row.variant.label} | {' | '.join(times)} | {_times(time_ratio)} "
            f"| {exponent(row, seconds_of)} |"
        )
        memory_lines.append(
            f"| {row.variant.label} | {' | '.join(memory)} | {_times(memory_ratio)} "
            f"| {exponent(row, bytes_of)} | {kernels_text(row)} |"
        )
    return "\n".join(time_lines), "\n".join(memory_lines)


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}×"


def summary(results: dict[str, list[Row]], ratio_sizes: tuple[str, str]) -> str:
    """Per variant and scope: the ratios between the ratio sizes, the exponents, and whether the
    memory grew within 1.5x of linear growth (ratio <= 1.5 x the ratio of the tokens)."""
    arrow = f"{ratio_sizes[0]}→{ratio_sizes[1]}"
    lines = [
        f"| mechanism | scope | tokens {arrow} | time {arrow} | time exponent | memory {arrow} "
        "| memory exponent | memory within 1.5× linear |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for scope in SCOPES:
        for row in results[scope]:
            growth = ratio(row, ratio_sizes, lambda cell: float(cell.tokens))
            memory_ratio = ratio(row, ratio_sizes, bytes_of)
            within = "—"
            if memory_ratio is not None:
                within = "yes" if memory_ratio <= 1.5 * growth else "no"
            lines.append(
                f"| {row.variant.label} | {scope} | {_times(growth)} "
                f"| {_times(ratio(row, ratio_sizes, seconds_of))} "
                f"| {exponent(row, seconds_of)} | {_times(memory_ratio)} "
                f"| {exponent(row, bytes_of)} | {within} |"
            )
    return "\n".join(lines)


def reference_slopes(
    axis: plt.Axes, row: Row, value: Callable[[Cell], float | None], scale: float
) -> None:
    """Faint ∝ N and ∝ N² lines through ``row``'s smallest size, to read the slopes by."""
    first = min(row.cells.values(), key=lambda c: c.tokens)
    tokens = np.array(sorted(c.tokens for c in row.cells.values()), dtype=float)
    for power, style in ((1, ":"), (2, "-.")):
        axis.plot(tokens, value(first) * scale * (tokens / first.tokens) ** power, style,
                  color="grey", alpha=0.6, linewidth=1, label=f"∝ N^{power}")  # fmt: skip


def plot(results: dict[str, list[Row]], path: Path, titles: dict[str, str]) -> None:
    """Time and memory against tokens, log-log, one line per variant, a row per scope."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for (scope, rows), line in zip(results.items(), axes, strict=True):
        for axis, value, unit in ((line[0], seconds_of, "s"), (line[1], bytes_of, "MiB")):
            scale = 1 if unit == "s" else 1 / MIB
            for row in rows:
                cells = sorted((c for c in row.cells.values() if value(c) is not None),
                               key=lambda c: c.tokens)  # fmt: skip
                axis.plot([c.tokens for c in cells], [value(c) * scale for c in cells],
                          "o--" if row.variant.math else "o-", label=row.variant.label,
                          markersize=3)  # fmt: skip
            reference_slopes(axis, rows[0], value, scale)
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.xaxis.set_minor_formatter(NullFormatter())  # labels at 2..9 × 10^k overlap
            axis.set_xlabel("tokens N")
            what = "forward+backward time" if unit == "s" else "peak memory"
            axis.set_ylabel(f"{what} ({unit})")
            axis.set_title(f"{titles[scope]}: {what}", fontsize=10)
            axis.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def conditions(
    device: torch.device, load_before: tuple[float, ...], load_after: tuple[float, ...]
) -> str:
    """The machine, torch's threads and the load around the run, in a sentence."""
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")] if cpuinfo.exists() else []  # fmt: skip
        machine = f"CPU {names[0] if names else 'unknown'}, {available_cpus()} cores"
    threads = torch.get_num_threads()
    return (
        f"{machine}, torch {torch.__version__} on {threads} thread{'s' * (threads != 1)}, "
        f"float32, batch 1; load average (1 min) {load_before[0]:.2f} before and "
        f"{load_after[0]:.2f} after the run"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in DEFAULT_SIZES]
    )
    parser.add_argument(
        "--ratio",
        nargs=2,
        type=parse_size,
        default=[(256, 256), (1024, 1024)],
        help="the two sizes of the printed ratios (among --sizes)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="calls per cell at most")
    parser.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="no further call of a cell once its calls took this many seconds",
    )
    parser.add_argument(
        "--max-gib", type=float, default=10.0, help="skip a size whose projected peak exceeds this"
    )
    parser.add_argument("--block-stage", type=int, default=2, help="the stage of the block")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[v.label for v in VARIANTS],
        choices=[v.label for v in VARIANTS],
        help="a subset, in the given order",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    parser.add_argument("--plot", type=Path, default=Path("docs/attention_cost.png"))
    return parser


def main(argv: list[str] | None = None) -> dict[str, list[Row]]:
    parser = build_parser()
    args = parser.parse_args(argv)  # fmt: skip
    missing = [size_label(s) for s in args.ratio if s not in args.sizes]
    if missing:
        parser.error(f"--ratio sizes {', '.join(missing)} are not among --sizes")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    sizes = sorted(set(args.sizes), key=lambda s: (s[0] * s[1], s))
    load_before = os.getloadavg()
    results: dict[str, list[Row]] = {scope: [] for scope in SCOPES}
    variants = {v.label: v for v in VARIANTS}
    for label in args.variants:
        encoder = build_encoder(variants[label], device)
        for scope, row in run_variant(variants[label], encoder, sizes, args, device).items():
            results[scope].append(row)
    load_after = os.getloadavg()
    ratio_sizes = (size_label(args.ratio[0]), size_label(args.ratio[1]))
    # Every variant's encoder has the same stages; the last one built names the block's.
    block_stride = encoder.output_shapes[f"stage{args.block_stage}"].stride
    channels = encoder.stages[args.block_stage].blocks[-1].norm_attention.normalized_shape[0]
    titles = {
        "block": f"one block at stride {block_stride} ({channels} channels)",
        "encoder": "whole encoder (tokens at stride 4)",
    }
    sections = []
    for scope in SCOPES:
        time_table, memory_table = tables(results[scope], ratio_sizes)
        sections.append(
            f"### {titles[scope].capitalize()}\n\nForward+backward time (ms):\n\n{time_table}"
            f"\n\nPeak memory above the start of the call (MiB):\n\n{memory_table}"
        )
    overview = summary(results, ratio_sizes)
    text = "\n\n".join(sections)
    print(text + "\n\n" + overview)
    plot(results, args.plot, titles)
    options = sys.argv[1:] if argv is None else argv
    # OMP_NUM_THREADS sets torch's threads, which change the times and the flash buffers.
    omp = os.environ.get("OMP_NUM_THREADS")
    prefix = [] if omp is None else [f"OMP_NUM_THREADS={omp}"]
    command = " ".join([*prefix, "uv run python -m benchmarks.attention", *options])
    block = (
        f"`{command}` ({datetime.date.today().isoformat()}, device {device.type}): "
        f"{conditions(device, load_before, load_after)}. Plot: `{args.plot}`.\n\n"
        f"Ratios {ratio_sizes[0]}→{ratio_sizes[1]} and exponents k "
        f"of cost ∝ N^k (least squares in log-log over the measured sizes):\n\n{overview}"
        f"\n\n{text}"
    )
    update_results(args.results, "attention", HEADING, block)
    print(f"written to {args.results} and {args.plot}")
    return results


if __name__ == "__main__":
    main()
