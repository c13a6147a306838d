"""The entry point: config -> distributed init -> data -> model -> train -> evaluate -> report.

    torchrun --nproc_per_node=N -m code.main --cfg FILE [--opts KEY VALUE ...] [--debug]
             [--resume] [--eval-only [--checkpoint PATH]]

also runs as plain ``python -m code.main``. FILE is a run config or a pipeline of them
(``code.engine.pipeline``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from yacs.config import CfgNode

from code.config import load_config, save_config
from code.data.build import SPLITS, build_loader, build_samples, build_splits
from code.data.gaze import GazeDataset
from code.data.samples import collate
from code.engine.checkpoint import load_checkpoint, load_model_state
from code.engine.evaluator import (
    evaluate_model,
    evaluate_scanpath_model,
    evaluation_workers,
    to_original_size,
)
from code.engine.pipeline import is_pipeline_file, load_pipeline, run_pipeline
from code.engine.reproducibility import run_info, seed_everything, set_deterministic
from code.engine.trainer import Trainer
from code.engine.visualize import save_overlay
from code.evaluate import format_table
from code.models.build import GazeModel, build_model
from code.utils import distributed as dist
from code.utils.logging import get_logger, init_logger


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m code.main", description=__doc__.split("\n")[0])
    parser.add_argument("--cfg", required=True, help="YAML configuration (or pipeline) file")
    parser.add_argument(
        "--opts", nargs="+", default=[], metavar="KEY VALUE", help="override config keys"
    )
    parser.add_argument(
        "--debug", action="store_true", help="DEBUG logging: constructor args, tensor shapes"
    )
    parser.add_argument(
        "--eval-only", action="store_true", help="evaluate a checkpoint (see --checkpoint)"
    )
    parser.add_argument(
        "--checkpoint", help="the checkpoint --eval-only scores (default: OUTPUT_DIR/best.pt)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue training exactly from OUTPUT_DIR/last.pt"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run one experiment, or every stage and fold of a pipeline; returns the test report."""
    args = parse_args(argv)
    if is_pipeline_file(Path(args.cfg)):
        if args.resume or args.eval_only or args.checkpoint:
            raise ValueError("a pipeline resumes unfinished stages by itself: drop --resume etc.")
        pipeline = load_pipeline(Path(args.cfg), args.opts)
        device = dist.init_distributed(pipeline.timeout_s)
        report = run_pipeline(pipeline, lambda cfg, resume: run(cfg, args, device, resume))
    else:
        cfg = load_config(args.cfg, args.opts)
        device = dist.init_distributed(cfg.DIST.TIMEOUT_S)
        report = run(cfg, args, device, args.resume)
    # Only after success: on an error the process exits and torchrun ends the other ranks,
    # whereas tearing the group down could wait on ranks stuck in a collective.
    dist.cleanup()
    return report


def run(cfg: CfgNode, args: argparse.Namespace, device: torch.device, resume: bool) -> dict:
    """Train (unless --eval-only) and evaluate one configuration; rank 0 writes its outputs."""
    output_dir = Path(cfg.OUTPUT_DIR)
    log = init_logger(output_dir, dist.rank(), args.debug)
    info = run_info()
    if dist.is_main():
        save_config(cfg, output_dir / "config.yaml")
        (output_dir / "run_info.json").write_text(json.dumps(info, indent=2))
    log.info(
        "config %s -> %s (%d process(es), %s)", args.cfg, output_dir, dist.world_size(), device
    )
    eval_workers = evaluation_workers(cfg)
    set_deterministic(cfg.DETERMINISTIC)
    # Ranks differ in their random streams; DDP gives every rank rank 0's initial weights.
    seed_everything(cfg.SEED + dist.rank())
    splits = build_splits(cfg)
    samples = {
        name: build_samples(cfg, getattr(splits, name), splits.centerbias, name) for name in SPLITS
    }
    loaders = {name: build_loader(cfg, samples[name], name == "train") for name in SPLITS}
    model = build_model(cfg)
    model.set_centerbias(splits.centerbias)  # travels in the checkpoint, for code.predict
    log.info("model: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    best = Path(args.checkpoint) if args.checkpoint else output_dir / "best.pt"
    if not args.eval_only:
        trainer = Trainer(cfg, model, loaders["train"], loaders["val"], device, output_dir, info)
        if resume:
            trainer.resume(output_dir / "last.pt")
        best = trainer.fit()
    load_model_state(model, load_checkpoint(best)["model"], best)
    model.to(device)
    if not model.predicts_log_density:
        log.info("the decoder predicts no log-density: nothing to score with the saliency metrics")
        return {}
    scanpaths = cfg.DATA.SAMPLES.NAME == "scanpath"
    if scanpaths:  # each fixation scored given the ones before it
        report = evaluate_scanpath_model(cfg, model, splits.test, splits.centerbias, device)
    else:
        report = evaluate_model(
            cfg, model, loaders["test"], splits.test, device, output_dir, eval_workers
        )
    if dist.is_main():
        report["checkpoint"] = str(best)
        (output_dir / "metrics.json").write_text(json.dumps(report, indent=2))
        log.info("test set results:\n%s", summary_table(report))
        if not scanpaths:  # sampled scanpaths are drawn by code.predict --scanpaths K
            save_overlays(cfg, model, splits.test, samples["test"], device, output_dir)
    return report or {}


def summary_table(report: dict) -> str:
    """The metric table, plus the share of the oracle's information gain where it is known."""
    table = format_table(report)
    if "oracle" in report["baselines"]:
        share = report["metrics"]["IG"] / report["baselines"]["oracle"]["IG"]
        table += f"\nmodel IG / oracle IG = {share:.1%}"
    return table


@torch.no_grad()
def save_overlays(
    cfg: CfgNode,
    model: GazeModel,
    dataset: GazeDataset,
    samples: torch.utils.data.Dataset,
    device: torch.device,
    output_dir: Path,
) -> None:
    """PNG overlays of the first test images: image, predicted and true density, fixations."""
    model.eval()
    folder = output_dir / "overlays"
    folder.mkdir(exist_ok=True)
    for index in range(min(cfg.EVAL.NUM_OVERLAYS, len(samples))):
        batch = collate([samples[index]]).to(device)
        stimulus = dataset.stimuli[index]
        log_density = to_original_size(model(batch)[0], stimulus.size).cpu().numpy()
        fix = dataset.fixations_of(index)
        truth = stimulus.true_log_density() if stimulus.true_log_density else None
        fixations_xy = np.stack([fix.x, fix.y], 1)
        path = folder / f"{stimulus.id}.png"
        save_overlay(path, stimulus.read(), log_density, fixations_xy, truth, stimulus.id)
    get_logger().info("overlays written to %s", folder)


if __name__ == "__main__":
    main()
