"""Fixations per second of NeVA's position search, by batch size, in one run.

    uv run python -m benchmarks.neva [--cfg configs/05_neva/reconstruction.yaml]
        [--batch-sizes 1 8 32] [--repeats 3] [--device cpu|cuda]

The run config's downstream model (random weights: the speed does not depend on them) with its
criterion, foveation and search (``LENGTH`` fixations of ``STEPS`` signed-gradient steps each),
on random images of ``DATA.IMAGE_SIZE``: each batch size ``--repeats`` times after a warm-up,
the fastest reported, beside the images/s of the downstream model's forward+backward alone at
that batch size (what the search's steps cost at least: one each).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from code.config import load_config
from code.models.build import build_model
from code.models.layers.foveation import Foveation
from code.models.neva import Criterion, Downstream, Search, sequential_scanpaths
from code.registry import CRITERIA


def search_and_step(
    criterion: Criterion, foveation: Foveation, search: Search, length: int
) -> tuple[Callable[[], object], Callable[[], object]]:
    """One batch's scanpaths, and one step of the search alone (the criterion's loss at one
    position and its gradient)."""
    images = criterion.images
    generator = torch.Generator().manual_seed(0)
    position = images.new_zeros(len(images), 2, requires_grad=True)
    residual, memory = foveation.start(images)

    def scanpath() -> object:
        return sequential_scanpaths(criterion, foveation, length, search, generator)

    def step() -> object:
        loss = criterion(foveation.perceive(images, residual, memory, position))
        return torch.autograd.grad(loss.sum(), position)

    return scanpath, step


def timed(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after a warm-up one (seconds)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cfg", default="configs/05_neva/reconstruction.yaml")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    cfg = load_config(args.cfg, [])
    task = cfg.TASK.SCANPATH_GENERATION
    device = torch.device(args.device)
    torch.manual_seed(0)
    downstream = Downstream(build_model(cfg).to(device), None, args.cfg)
    foveation = Foveation(**{key.lower(): value for key, value in task.FOVEATION.items()})
    foveation = foveation.to(device)
    searched = task.GENERATOR.SEQUENTIAL  # the sequential search's settings
    search = Search(searched.STEPS, searched.LR, searched.JITTER)
    height, width = cfg.DATA.IMAGE_SIZE

    print(f"\n{args.cfg}: {cfg.MODEL.ENCODER.NAME} + {cfg.MODEL.DECODER.NAME}, criterion "
          f"{task.CRITERION.NAME}, {height}x{width} images, {task.LENGTH} fixations x "
          f"{search.steps} steps, {device}, {torch.get_num_threads()} torch threads\n")  # fmt: skip
    print("| batch | fixations/s | s per batch | model fwd+bwd images/s | steps/s vs fwd+bwd |")
    print("|---:|---:|---:|---:|---:|")
    for batch_size in args.batch_sizes:
        images = torch.rand(batch_size, 3, height, width, device=device)
        criterion = CRITERIA.build(task.CRITERION, downstream=downstream, images=images)
        scanpath, step = search_and_step(criterion, foveation, search, task.LENGTH)
        seconds, one = timed(scanpath, args.repeats), timed(step, args.repeats)
        steps = task.LENGTH * search.steps
        print(f"| {batch_size} | {batch_size * task.LENGTH / seconds:.1f} | {seconds:.2f} | "
              f"{batch_size / one:.1f} | {steps * one / seconds:.2f} |")  # fmt: skip
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
