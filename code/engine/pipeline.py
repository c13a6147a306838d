"""Multi-stage training pipelines, optionally per fold of a k-fold cross-validation by image.

A pipeline file holds one node, ``PIPELINE``::

    PIPELINE:
      OUTPUT_DIR: output/02_pipeline/demo
      STAGES: [spatial.yaml, finetune.yaml]  # ordinary run configs, relative to this file
      OPTS: []         # KEY VALUE overrides for every stage
      FOLDS: 2         # k-fold cross-validation by image; null: each stage's own split

Stage ``s`` of fold ``k`` runs in ``OUTPUT_DIR/fold<k>/<stage file stem>`` and starts from the
best checkpoint of stage ``s - 1`` of the same fold (``TRAIN.INIT.CHECKPOINT``). On a rerun, a
stage whose ``metrics.json`` exists is skipped (and the log says so) when the configuration it
ran with (its ``config.yaml``) equals the one it would run with now; one that differs is refused,
naming the differing keys, unless ``--overwrite`` runs it again (with every later stage of its
fold). A stage with a last checkpoint but no ``metrics.json`` resumes.
At the end, ``summary.json`` and ``summary.txt`` give each stage's test metrics over the folds
(mean ± standard deviation, ddof 0). On the command line, ``--opts PIPELINE.<KEY> VALUE`` sets a
pipeline key; any other ``--opts`` pair is added to every stage's overrides.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from yacs.config import CfgNode

from code.config import ConfigError, flat_keys, load_config, load_tree, with_added_keys
from code.engine.checkpoint import Checkpointer
from code.engine.outputs import RunExistsError
from code.utils import distributed as dist
from code.utils.logging import get_logger

PIPELINE_SCHEMA = {
    "PIPELINE": {
        "OUTPUT_DIR": str,
        "STAGES": list[str],
        "OPTS": list[str],
        "FOLDS": int | None,
    }
}


@dataclass(frozen=True)
class StageRun:
    """One stage of one fold, with its fully resolved configuration."""

    stage: str
    fold: int | None
    cfg: CfgNode


@dataclass(frozen=True)
class Pipeline:
    output_dir: Path
    folds: int | None
    runs: list[StageRun]  # in execution order: fold by fold, stage by stage

    @property
    def timeout_s(self) -> int:
        return self.runs[0].cfg.DIST.TIMEOUT_S


def load_pipeline(path: Path, opts: list[str]) -> Pipeline:
    """Read a pipeline and resolve every stage of every fold now, so errors come before work."""
    if len(opts) % 2:
        raise ConfigError(f"--opts takes KEY VALUE pairs, got an odd count: {opts}")
    pairs = list(zip(opts[::2], opts[1::2], strict=True))
    own = [x for key, value in pairs if key.startswith("PIPELINE.") for x in (key, value)]
    for_stages = [
        x for key, value in pairs if not key.startswith("PIPELINE.") for x in (key, value)
    ]
    node = load_tree(path, own, PIPELINE_SCHEMA).PIPELINE
    names = [Path(stage).stem for stage in node.STAGES]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"{path}: PIPELINE.STAGES needs distinct stage files, got {names}")
    if len(node.OPTS) % 2:
        raise ConfigError(f"{path}: PIPELINE.OPTS takes KEY VALUE pairs, got {node.OPTS}")
    output_dir = Path(node.OUTPUT_DIR)
    runs = []
    for fold in range(node.FOLDS) if node.FOLDS is not None else [None]:
        folder = output_dir / f"fold{fold}" if fold is not None else output_dir
        previous: Path | None = None
        for name, stage_file in zip(names, node.STAGES, strict=True):
            stage_opts = [*node.OPTS, *for_stages, "OUTPUT_DIR", str(folder / name)]
            if fold is not None:
                stage_opts += ["DATA.SPLIT.FOLDS", str(node.FOLDS), "DATA.SPLIT.FOLD", str(fold),
                               "DATA.SPLIT.TEST_FRACTION", "0.0"]  # fmt: skip
            if previous is not None:
                stage_opts += ["TRAIN.INIT.CHECKPOINT", str(Checkpointer(previous).best)]
            runs.append(StageRun(name, fold, load_config(path.parent / stage_file, stage_opts)))
            previous = folder / name
    return Pipeline(output_dir, node.FOLDS, runs)


def run_pipeline(
    pipeline: Pipeline, run_stage: Callable[[CfgNode, bool, bool], dict], overwrite: bool
) -> dict:
    """Run, skip or resume every stage (see the module docstring); ``run_stage(cfg, resume,
    overwrite)`` returns its report."""
    reports: dict[str, list[dict]] = {}
    ran_in_fold: set[int | None] = set()  # folds where a stage ran: later stages must run too
    for run in pipeline.runs:
        dist.barrier()  # rank 0 has written the previous stage's files
        output_dir = Path(run.cfg.OUTPUT_DIR)
        done = output_dir / "metrics.json"
        name = run.stage if run.fold is None else f"{run.stage} (fold {run.fold})"
        if done.is_file():
            changed = changed_keys(output_dir / "config.yaml", run.cfg)
            if run.fold in ran_in_fold:
                changed.append("TRAIN.INIT.CHECKPOINT (its stage ran again)")
            if not changed:
                get_logger().info("stage %s: finished with this config, skipped: %s", name, done)
                reports.setdefault(run.stage, []).append(json.loads(done.read_text()))
                continue
            if not overwrite:
                raise RunExistsError(
                    f"{output_dir}: stage {name} finished with another config (differs in: "
                    f"{', '.join(changed)}); pass --overwrite to run the changed stages again, "
                    "or choose another PIPELINE.OUTPUT_DIR"
                )
            get_logger().info("stage %s: config differs in %s; running it again", name, changed)
            report = run_stage(run.cfg, False, True)
        else:
            report = run_stage(run.cfg, Checkpointer(output_dir).can_resume(), False)
        ran_in_fold.add(run.fold)
        reports.setdefault(run.stage, []).append(report)
    summary = summarise(reports)
    if dist.is_main():
        pipeline.output_dir.mkdir(parents=True, exist_ok=True)
        (pipeline.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        table = format_summary(summary)
        (pipeline.output_dir / "summary.txt").write_text(table + "\n")
        get_logger().info("pipeline %s, test metrics over folds:\n%s", pipeline.output_dir, table)
    return summary


def changed_keys(saved: Path, cfg: CfgNode) -> list[str]:
    """The keys whose values in ``cfg`` differ from the config saved at ``saved`` (a run's
    ``config.yaml``), as ``KEY (old -> new)``; every key when there is none."""
    if not saved.is_file():
        return [f"everything ({saved} is missing)"]
    before = flat_keys(with_added_keys(yaml.safe_load(saved.read_text())))
    now = flat_keys(yaml.safe_load(cfg.dump()))
    return [
        f"{key} ({before.get(key, 'unset')} -> {now.get(key, 'unset')})"
        for key in sorted(before.keys() | now.keys())
        if before.get(key) != now.get(key)
    ]


def summarise(reports: dict[str, list[dict]]) -> dict:
    """Per stage: mean, std and per-fold values of the model's and the baselines' metrics (the
    numbers of its ``metrics.json``)."""

    def stats(values: list[float]) -> dict:
        return {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": values}

    summary: dict = {}
    for stage, runs in reports.items():
        models = {"model": [r["metrics"] for r in runs]}
        # a stage of another task (e.g. pretraining) may report no baselines
        baselines = runs[0].get("baselines", {})
        models.update({name: [r["baselines"][name] for r in runs] for name in baselines})
        summary[stage] = {
            model: {metric: stats([s[metric] for s in scores]) for metric in scores[0]}
            for model, scores in models.items()
        }
    return summary


def format_summary(summary: dict) -> str:
    """A table: one row per stage (the model) and per baseline, mean ± std of each metric."""
    last = summary[list(summary)[-1]]
    metrics = list(last["model"])
    rows = [(stage, scores["model"]) for stage, scores in summary.items()]
    rows += [(name, scores) for name, scores in last.items() if name != "model"]
    width = max(len(name) for name, _ in rows) + 2
    lines = [" " * width + "".join(f"{m:>20}" for m in metrics)]
    for name, scores in rows:
        cells = [
            f"{scores[m]['mean']:>11.4f} ± {scores[m]['std']:<6.4f}"
            if m in scores
            else f"{'-':>20}"
            for m in metrics  # a baseline may lack a metric (the gold standard has LL, IG)
        ]
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)
