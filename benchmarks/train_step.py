"""Images/s of the framework's training loop against a minimal PyTorch loop, in one run.

    uv run python -m benchmarks.train_step --cfg configs/quickstart.yaml [--epochs 1]
        [--variants eager channels_last compile] [--repeats 2] [--opts KEY VALUE ...]

- **framework**: ``code.main``'s ``Trainer`` over the task's real training loader (reading,
  caching, transforms and collation included), one epoch per variant of ``TRAIN.COMPILE`` /
  ``TRAIN.CHANNELS_LAST``, each on a freshly built model (a compiled one compiles in its epoch);
- **plain loop**: the same epoch's batches, collated beforehand and held in memory, through the
  same model's forward and loss, ``backward`` and the same optimizer — what a hand-written loop
  over ready tensors costs;
- **loader**: the training loader alone (images/s it delivers, against the images/s the step
  consumes);
- a **per-phase breakdown** of both loops (ms per step): data, forward, loss, backward,
  optimizer, logging — the plain loop's from its own clock, the framework's from a profiled
  epoch (``torch.profiler`` over the phases the trainer labels; the profiler adds its own
  overhead, so only the split is read from it).

Validation, checkpoints and wandb are not part of the timed epochs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from code.config import load_config
from code.engine.optim import build_optimizer
from code.engine.reproducibility import seed_everything
from code.engine.trainer import Trainer, TrainState
from code.models.build import GazeModel
from code.tasks.base import Task, build_task
from code.utils.logging import init_logger

PHASES = ("data", "forward", "loss", "backward", "optimizer", "logging")
VARIANTS = {
    "eager": [],
    "channels_last": ["TRAIN.CHANNELS_LAST", "true"],
    "compile": ["TRAIN.COMPILE", "default"],
}


def prepared_task(config: Path, opts: list[str], output: Path) -> Task:
    """The configured task with its data loaded (as ``code.main`` prepares it)."""
    cfg = load_config(config, [*opts, "OUTPUT_DIR", str(output),
                               "TRACKING.WANDB.ENABLED", "false",
                               "TRAIN.CHECKPOINT_EVERY", "null"])  # fmt: skip
    task = build_task(cfg)
    task.check()
    seed_everything(cfg.SEED)
    task.prepare()
    return task


def framework_trainer(task: Task, output: Path) -> Trainer:
    """The trainer ``code.main`` would make for ``task``, on a freshly built model."""
    seed_everything(task.cfg.SEED)
    model = task.build_model()
    return Trainer(task.cfg, model, task.loaders["train"], task.loaders["val"],
                   torch.device("cpu"), output, {},
                   scorer=lambda: task.validation(model))  # fmt: skip


def framework_epoch(trainer: Trainer) -> float:
    """Images/s of one training epoch of ``trainer`` (started afresh: epoch 0's batches)."""
    trainer.state = TrainState()
    start = time.perf_counter()
    with trainer.tracking():
        trainer.train_epoch()
    return len(trainer.train_loader.dataset) / (time.perf_counter() - start)


def framework_phases(trainer: Trainer) -> dict[str, float]:
    """Per-phase ms per step of one profiled epoch: the phases the trainer labels, and the
    time spent getting batches from the loader."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        framework_epoch(trainer)
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        name = "data" if event.key.startswith("enumerate(DataLoader)") else event.key
        if name in PHASES:
            totals[name] += event.cpu_time_total / 1e3
    return {p: totals[p] / len(trainer.train_loader) for p in PHASES}


def plain_loop(task: Task) -> tuple[GazeModel, torch.optim.Optimizer]:
    """A freshly built model of ``task`` in training mode, and its configured optimizer."""
    seed_everything(task.cfg.SEED)
    model = task.build_model().train()
    return model, build_optimizer(task.cfg, model)


def plain_epoch(
    model: GazeModel, optimizer: torch.optim.Optimizer, batches: list
) -> tuple[float, dict]:
    """(images/s, per-phase ms per step) of the hand-written loop over ready batches."""
    clock: dict[str, float] = defaultdict(float)
    images = 0
    start = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        prediction, batch = model(batch)
        t1 = time.perf_counter()
        loss_sum, count = model.loss(prediction, batch)
        t2 = time.perf_counter()
        (loss_sum / count).backward()
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        for phase, seconds in zip(PHASES[1:5], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            clock[phase] += seconds * 1e3
        images += len(batch)
    seconds = time.perf_counter() - start
    return images / seconds, {p: clock[p] / len(batches) for p in PHASES}


def loader_rate(loader: torch.utils.data.DataLoader) -> tuple[float, list]:
    """(images/s, the batches) of one pass over the training loader, epoch 0's order."""
    loader.batch_sampler.set_epoch(0)
    start = time.perf_counter()
    batches = list(loader)
    seconds = time.perf_counter() - start
    return sum(len(b) for b in batches) / seconds, batches


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cfg", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds of every loop")
    parser.add_argument("--opts", nargs="*", default=[])
    return parser


def main() -> None:
    args = build_parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp)
        init_logger(output, 0, False)
        task = prepared_task(args.cfg, args.opts, output / "run")
        loaded, batches = loader_rate(task.loaders["train"])
        trainers = {
            variant: framework_trainer(
                task if variant == "eager" else prepared_task(
                    args.cfg, [*args.opts, *VARIANTS[variant]], output / variant),
                output / variant)
            for variant in args.variants
        }  # fmt: skip
        model, optimizer = plain_loop(task)
        # Round 0 warms every loop up (and compiles); the rounds after it alternate the loops,
        # so a change in the machine's load hits all of them; each loop's median is reported.
        plain_rates, rates = [], defaultdict(list)
        for _ in range(args.repeats + 1):
            rate, plain_phases = plain_epoch(model, optimizer, batches)
            plain_rates.append(rate)
            for variant, trainer in trainers.items():
                rates[variant].append(framework_epoch(trainer))
        plain = statistics.median(plain_rates[1:])
        rows = [(variant, statistics.median(r[1:])) for variant, r in rates.items()]
        phases = framework_phases(trainers[args.variants[0]])
    cfg = task.cfg
    print(f"\n{args.cfg}: batch {cfg.DATA.BATCH_SIZE}, {len(batches)} steps per epoch, "
          f"{cfg.DATA.NUM_WORKERS} loader workers, {torch.get_num_threads()} torch threads, "
          f"load average {os.getloadavg()[0]:.2f}\n")  # fmt: skip
    print("| loop | images/s | vs plain loop |\n|---|---:|---:|")
    print(f"| plain loop (batches in memory) | {plain:.1f} | 1.00 |")
    for variant, rate in rows:
        print(f"| framework, {variant} | {rate:.1f} | {rate / plain:.2f} |")
    print(f"| loader alone | {loaded:.1f} | {loaded / plain:.2f} (× the step's rate) |")
    print("\n| ms per step | " + " | ".join(PHASES) + " |\n" + "|---" * (len(PHASES) + 1) + "|")
    print("| plain loop | " + " | ".join(f"{plain_phases[p]:.1f}" for p in PHASES) + " |")
    print("| framework (profiled) | " + " | ".join(f"{phases[p]:.1f}" for p in PHASES) + " |")


if __name__ == "__main__":
    main()
