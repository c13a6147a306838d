"""Time of one Mr-CNN dense map of an 800x600 image on the CPU: the grid's crops batched vs a
loop classifying one point at a time, and their ratio, in one run.

    uv run python -m benchmarks.mr_cnn [--cfg configs/03_mr_cnn/mit1003/faithful.yaml]
        [--grid 50 50] [--points-per-pass 500] [--loop-points 100] [--threads N]

The run config's model (random weights: the speed does not depend on them) on one random
600x800 image, in eval mode without gradients. Batched: ``DenseSaliency``, the whole grid in
passes of ``--points-per-pass`` points. Loop: the model called on one point at a time, timed on
the grid's first ``--loop-points`` points and scaled to the whole grid (the full loop takes
minutes, and every point costs the same).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from code.config import load_config
from code.data.batch import Batch
from code.models.build import build_model
from code.tasks.patch_classification import DenseSaliency

HEIGHT, WIDTH = 600, 800


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cfg", default="configs/03_mr_cnn/mit1003/faithful.yaml")
    parser.add_argument("--grid", type=int, nargs=2, default=[50, 50], metavar=("ROWS", "COLS"))
    parser.add_argument("--points-per-pass", type=int, default=500)
    parser.add_argument("--loop-points", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(load_config(args.cfg, [])).eval()
    batch = Batch(
        input=torch.rand(1, 3, HEIGHT, WIDTH),
        image_index=torch.zeros(1, dtype=torch.int64),
        original_size=torch.tensor([[HEIGHT, WIDTH]]),
    )
    dense = DenseSaliency(model, args.grid, None, args.points_per_pass)
    points = dense.grid_points(HEIGHT, WIDTH, torch.device("cpu")).flatten(0, 1)
    with torch.no_grad():
        start = time.perf_counter()
        dense(batch)
        batched = time.perf_counter() - start
        start = time.perf_counter()
        for point in points[: args.loop_points]:
            model(dataclasses.replace(batch, points=point.view(1, 1, 2)))
        loop = (time.perf_counter() - start) / min(args.loop_points, len(points)) * len(points)
    result = {"grid": args.grid, "threads": args.threads, "batched_s": batched, "loop_s": loop,
              "ratio": loop / batched}  # fmt: skip
    print(
        f"{args.grid[0]}x{args.grid[1]} points on {WIDTH}x{HEIGHT}, {args.threads} thread(s): "
        f"batched {batched:.2f} s, per-point loop {loop:.2f} s (from {args.loop_points} points) "
        f"-> {loop / batched:.1f}x"
    )
    return result


if __name__ == "__main__":
    main()
