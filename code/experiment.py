"""What ``code.main`` runs: one experiment, or every stage and fold of a pipeline — config,
distributed init, the task's data, model, training and evaluation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from yacs.config import CfgNode

from code.config import save_config
from code.engine.checkpoint import Checkpointer
from code.engine.outputs import claim_run_folder, run_folder
from code.engine.pipeline import load_pipeline, run_pipeline
from code.engine.reproducibility import run_info, seed_everything, set_deterministic
from code.engine.trainer import Trainer
from code.tasks.base import build_task
from code.utils import distributed as dist
from code.utils.logging import init_logger


def run_pipeline_file(args: argparse.Namespace) -> dict:
    """Run every stage and fold of the pipeline ``args.cfg`` (``code.main``'s parsed arguments);
    returns the last stage's test report."""
    if args.resume or args.eval_only or args.checkpoint:
        raise ValueError(
            "a pipeline resumes unfinished stages and skips finished ones by itself: drop "
            "--resume, --eval-only, --checkpoint (--overwrite runs the stages whose config "
            "changed again)"
        )
    pipeline = load_pipeline(Path(args.cfg), args.opts)
    device = dist.init_distributed(pipeline.timeout_s)
    init_logger(pipeline.output_dir, dist.rank(), args.debug)  # each stage logs to its own
    report = run_pipeline(
        pipeline,
        lambda cfg, resume, overwrite: run(cfg, args, device, resume, overwrite),
        args.overwrite,
    )
    _leave_process_group()
    return report


def run_config(cfg: CfgNode, args: argparse.Namespace) -> dict:
    """Run the experiment of one loaded run config (``code.main``'s parsed arguments); returns
    its test report."""
    device = dist.init_distributed(cfg.DIST.TIMEOUT_S)
    report = run(cfg, args, device, args.resume, args.overwrite)
    _leave_process_group()
    return report


def _leave_process_group() -> None:
    # Only after success: on an error the process exits and torchrun ends the other ranks,
    # whereas tearing the group down could wait on ranks stuck in a collective.
    dist.cleanup()


def run(
    cfg: CfgNode, args: argparse.Namespace, device: torch.device, resume: bool, overwrite: bool
) -> dict:
    """Run one configuration's task: prepare, train (unless --eval-only or the task does not
    train), evaluate; rank 0 writes the outputs (``--eval-only``: to ``OUTPUT_DIR/eval``)."""
    output_dir = Path(cfg.OUTPUT_DIR)
    folder = run_folder(output_dir, args.eval_only)
    removed = claim_run_folder(folder, resume, overwrite)
    log = init_logger(folder, dist.rank(), args.debug)
    if removed:
        log.info("%s: started over; removed %s", folder, ", ".join(removed))
    task = build_task(cfg)
    task.check()
    best = Path(args.checkpoint) if args.checkpoint else Checkpointer(output_dir).best
    if args.eval_only and task.trains and not best.is_file():
        raise FileNotFoundError(f"--eval-only: checkpoint not found: {best}")
    info = run_info()
    if dist.is_main():
        save_config(cfg, folder / "config.yaml")
        (folder / "run_info.json").write_text(json.dumps(info, indent=2))
    log.info(
        "config %s -> %s (task %s, %d process(es), %s)",
        args.cfg, folder, cfg.TASK.NAME, dist.world_size(), device,
    )  # fmt: skip
    set_deterministic(cfg.DETERMINISTIC)
    # Ranks differ in their random streams; DDP gives every rank rank 0's initial weights.
    seed_everything(cfg.SEED + dist.rank())
    task.prepare()
    model = task.build_model()
    log.info("model: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    if task.trains:
        if not args.eval_only:
            loaders = task.loaders
            trainer = Trainer(cfg, model, loaders["train"], loaders["val"], device, output_dir,
                              info, scorer=lambda: task.validation(model))  # fmt: skip
            if resume:
                trainer.resume()
            best = trainer.fit()
        Checkpointer.load_weights(model, best, strict=True)
    model.to(device)
    report = task.evaluate(model, device, folder)
    if dist.is_main():
        if task.trains:
            report["checkpoint"] = str(best)
        (folder / "metrics.json").write_text(json.dumps(report, indent=2))
        log.info("test set results:\n%s", task.summary(report))
        task.save_figures(model, device, folder, report)
    return report or {}
