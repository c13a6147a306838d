"""Peak memory and time of semantic painting: ours at feature resolution vs the seed's at full
image resolution, for one DINOv2 ViT-L/14 map (1024 channels) of a 1022x1358 image.

Semantic painting gives every position the mean encoder feature of its segment. The seed
(DinoGaze-SPADE) did it at image resolution (as DESIGN.md describes it; the seed's
README has no code): patch features upsampled to one feature vector per pixel, each segment
averaged over its pixels, every pixel painted with its segment's mean. ``seed_painting`` below
is our re-implementation of that approach, not the seed's code. Ours
(``code.models.blocks.spade``) never leaves the patch grid: a patch's membership in a segment is
the fraction of its pixels in it, and means and painting are membership-weighted sums.

What must agree. Let s be the stride, c_kp the number of pixels of patch p in segment k and
n_k = sum_p c_kp. Nearest-neighbour upsampling gives each pixel its patch's feature F_p, so the
seed's mean of segment k is sum_p c_kp F_p / n_k, which is ours, sum_p m_kp F_p / sum_p m_kp with
m_kp = c_kp / s^2 (up to ``segments.EPS`` in the denominator). Averaging the seed's painting over
the s x s pixels of patch p gives sum_k m_kp mean_k, which is our painting of p (our membership
sums to 1 wherever the patch lies inside the image: H and W are multiples of s here). So the
benchmark checks (1) the per-segment means and (2) the seed's painting average-pooled to the
patch grid against ours, to float32 rounding. (With bilinear upsampling the per-pixel features
would blend neighbouring patches and neither identity would hold; the memory would be the same.)

Each method runs in a fresh process on the same inputs (written by this one); see
``peak_bytes_above`` for how memory is measured. Linux only (it reads /proc/self).

    uv run python -m benchmarks.painting
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from code.data.batch import Batch
from code.models.blocks.spade import memberships
from code.models.layers.segments import segment_means, segment_membership, semantic_painting
from code.models.shapes import ShapeSpec

STRIDE = 14  # DINOv2's patch size
SEED_BLOCK = 2**16  # pixels per block of the seed's segment sums (a 12 MB one-hot at 48 segments)
METHODS = ("ours", "seed")
# Largest difference allowed between the two sides, relative to the largest input feature.
# Both sides sum in float32 in blocks, which keeps rounding near 10^-7 of the features' size.
# Ours' EPS scales a segment's mean by n_k / (n_k + s^2 * EPS), a change of 2e-7 of it at
# 1000 pixels and 1e-6 at 200, and its painting by 1 / (1 + EPS). A wrong pixel-to-patch
# mapping or weighting shows at ~10^-2.
TOLERANCE = 1e-5


def voronoi_labels(height: int, width: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(1, H, W) int64 labels 0..K-1 of the Voronoi cells of ``count`` random points: blob-like
    segments of varied size whose borders cut through patches, as a real segmenter's do.

    Cells that hold no pixel are dropped, so K <= count and every label occurs.
    """
    centres = torch.rand(count, 2, generator=generator) * torch.tensor([height, width])
    rows = torch.arange(height, dtype=torch.float32)
    cols = torch.arange(width, dtype=torch.float32)
    distance = (rows[None, :, None] - centres[:, 0, None, None]) ** 2 + (
        cols[None, None, :] - centres[:, 1, None, None]
    ) ** 2
    labels = distance.argmin(0)
    return torch.unique(labels, return_inverse=True)[1][None]


def seed_painting(features: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """The seed's approach, re-implemented: (B, C, h, w) patch features, (B, H, W) labels ->
    (B, C, H, W), every pixel painted with the mean per-pixel feature of its segment.

    Upsampling is ``F.interpolate``'s default (nearest): each pixel takes its patch's token.
    Written to be as lean and fast as the approach allows, so the ratios are lower bounds:
    channels-last storage makes each pixel's feature one contiguous row; the segment sums are
    matrix products of one-hot labels and rows, one block of pixels at a time (blocked sums keep
    float32 rounding small, where one ``index_add_`` pass over 10^5 pixels would not); the
    painting is one row gather written in place. So the large tensors are the two the approach
    needs, the per-pixel features and the painting (each C*H*W floats, ~5.7 GB here).
    """
    channels = features.shape[1]
    pixels = F.interpolate(
        features.contiguous(memory_format=torch.channels_last),
        size=tuple(segments.shape[-2:]),
        mode="nearest",
    )
    painted = torch.empty_like(pixels)  # channels-last too
    for image, labels in enumerate(segments.flatten(1)):
        rows = pixels[image].permute(1, 2, 0).view(-1, channels)  # (H*W, C) views
        painted_rows = painted[image].permute(1, 2, 0).view(-1, channels)
        count = int(labels.max()) + 1
        sums = pixels.new_zeros(count, channels)
        for start in range(0, len(labels), SEED_BLOCK):
            block = slice(start, start + SEED_BLOCK)
            sums += F.one_hot(labels[block], count).T.to(rows.dtype) @ rows[block]
        means = sums / torch.bincount(labels, minlength=count)[:, None]
        torch.index_select(means, 0, labels, out=painted_rows)
    return painted


def our_painting(features: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Ours: what ``SpadeBlock.forward`` computes as each map's condition, (B, C, h, w)."""
    shapes = {"map": ShapeSpec(features.shape[1], STRIDE)}
    members = memberships({"map": features}, shapes, batch)
    return semantic_painting(features, members["map"])


def painted_means(painted: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) full-resolution painting, (1, H, W) labels 0..K-1, all present -> (1, K, C):
    each segment's painted value (its mean), read at its first pixel."""
    labels = segments[0].flatten()
    first = torch.full((int(labels.max()) + 1,), labels.numel()).scatter_reduce(
        0, labels, torch.arange(labels.numel()), "amin"
    )
    return painted[0].flatten(1)[:, first].T[None].clone()  # a copy: not a view of 5.7 GB


def method_call(
    method: str, features: torch.Tensor, segments: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """A call of ``method`` on these inputs, with everything it reads allocated beforehand."""
    if method == "seed":
        return lambda: seed_painting(features, segments)
    batch = Batch(
        input=torch.zeros(len(segments), 3, *segments.shape[-2:]),
        image_index=torch.arange(len(segments)),
        original_size=torch.tensor([list(segments.shape[-2:])] * len(segments)),
        segments=segments,
    )
    return lambda: our_painting(features, batch)


def status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def peak_bytes_above(call: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
    """The peak resident memory ``call`` adds to this process, and its result.

    tracemalloc sees only Python's own allocator, and torch allocates tensor storage directly
    (posix_memalign/mmap), so it would see almost nothing. The kernel's peak resident set size
    (VmHWM) counts every page touched, whoever allocated it; writing 5 to /proc/self/clear_refs
    resets it to the current size, so imports and inputs are left out. This is to be called once
    per fresh process, before any large allocation has been freed: glibc keeps freed heap
    memory, which would let a later call reuse pages without raising the peak.
    """
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    result = call()
    return (status_kib("VmHWM") - before) * 1024, result


def run_worker(method: str, directory: Path, repeats: int) -> None:
    """One method in this (fresh) process: peak memory of its first call, the time of
    ``repeats`` calls, and what the comparison needs, written to ``directory/<method>.pt``."""
    inputs = torch.load(directory / "inputs.pt")
    features, segments = inputs["features"], inputs["segments"]
    # A tiny case first, so the code pages of the kernels used (loaded on first use, and
    # resident memory too) are not counted as the method's memory.
    tiny = torch.zeros(1, 2 * STRIDE, 2 * STRIDE, dtype=torch.int64)
    tiny[..., STRIDE:] = 1
    method_call(method, torch.randn(1, features.shape[1], 2, 2), tiny)()
    call = method_call(method, features, segments)
    start = time.perf_counter()
    peak, painted = peak_bytes_above(call)
    times = [time.perf_counter() - start]
    for _ in range(repeats - 1):
        del painted  # the seed's painting is ~5.7 GB: never hold two
        start = time.perf_counter()
        painted = call()
        times.append(time.perf_counter() - start)
    if method == "seed":
        means, grid = painted_means(painted, segments), F.avg_pool2d(painted, STRIDE)
    else:
        membership = segment_membership(segments, STRIDE, tuple(features.shape[-2:]))
        means, grid = segment_means(features, membership), painted
    torch.save({"means": means, "grid": grid}, directory / f"{method}.pt")
    print(json.dumps({"peak_bytes": peak, "times_s": times}))


def run_method(method: str, directory: Path, repeats: int) -> dict:
    """``run_worker`` in a fresh Python process; its measurements."""
    command = [sys.executable, "-m", "benchmarks.painting", "--worker", method]
    command += ["--dir", str(directory), "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {method} run failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def relative_difference(ours: torch.Tensor, seed: torch.Tensor, scale: torch.Tensor) -> float:
    """max |ours - seed| / max |scale|: relative to the features' size (segment means of
    random features are near zero, so their own size would magnify rounding)."""
    return float((ours - seed).abs().max() / scale.abs().max())


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, nargs=2, default=[1022, 1358], metavar=("H", "W"))
    parser.add_argument("--channels", type=int, default=1024, help="ViT-L/14: 1024")
    parser.add_argument("--segments", type=int, default=48, help="Voronoi cells in the label map")
    parser.add_argument("--repeats-ours", type=int, default=20)
    parser.add_argument("--repeats-seed", type=int, default=3)
    parser.add_argument("--worker", choices=METHODS, help="internal: run one method here")
    parser.add_argument("--dir", type=Path, help="internal: the inputs' folder")
    parser.add_argument("--repeats", type=int, help="internal: calls to time")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.worker:
        run_worker(args.worker, args.dir, args.repeats)
        return
    height, width = args.size
    if height % STRIDE or width % STRIDE:
        raise SystemExit(f"--size must be multiples of {STRIDE} (the identities assume no padding)")
    generator = torch.Generator().manual_seed(0)
    segments = voronoi_labels(height, width, args.segments, generator)
    grid = (height // STRIDE, width // STRIDE)
    features = torch.randn(1, args.channels, *grid, generator=generator)
    repeats = {"ours": args.repeats_ours, "seed": args.repeats_seed}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        torch.save({"features": features, "segments": segments}, directory / "inputs.pt")
        runs = {method: run_method(method, directory, repeats[method]) for method in METHODS}
        outputs = {method: torch.load(directory / f"{method}.pt") for method in METHODS}
    sizes = torch.bincount(segments.flatten())
    print(
        f"{args.channels} channels, {height}x{width} image -> {grid[0]}x{grid[1]} patches of "
        f"{STRIDE} px; {len(sizes)} segments of {int(sizes.min())}-{int(sizes.max())} px; "
        f"float32, batch 1, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    full_mib = args.channels * height * width * 4 / 2**20
    print(f"one full-resolution feature map (C*H*W float32): {full_mib:.0f} MiB")
    print(f"{'method':<34} {'peak memory':>12} {'time (median)':>14} {'first call':>11}")
    labels = {
        "ours": "ours, feature resolution",
        "seed": "seed's approach, full resolution",
    }
    for method in METHODS:
        run = runs[method]
        peak_mib = run["peak_bytes"] / 2**20
        median = statistics.median(run["times_s"])
        print(
            f"{labels[method]:<34} {peak_mib:>8.1f} MiB {median:>12.3f} s "
            f"{run['times_s'][0]:>9.3f} s   ({len(run['times_s'])} calls)"
        )
    memory_ratio = runs["seed"]["peak_bytes"] / runs["ours"]["peak_bytes"]
    time_ratio = statistics.median(runs["seed"]["times_s"]) / statistics.median(
        runs["ours"]["times_s"]
    )
    print(f"seed / ours: {memory_ratio:.0f}x the memory, {time_ratio:.0f}x the time")
    for name, what in (("means", "per-segment means"), ("grid", "painting on the patch grid")):
        difference = relative_difference(outputs["ours"][name], outputs["seed"][name], features)
        print(f"{what}: max |ours - seed| / max |features| = {difference:.1e}")
        if not difference <= TOLERANCE:
            raise SystemExit(f"{what} differ by {difference:.1e} > {TOLERANCE:.0e}")


if __name__ == "__main__":
    main()
