"""Score predictions made anywhere against a data set's fixations, beside the baselines.

    python -m code.evaluate saliency --dataset osie --root ../shared/data/osie \\
        --predictions DIR --kind log-density --out result.json [--opts EVAL.PROTOCOL benchmark]
    python -m code.evaluate scanpaths --dataset osie --root ../shared/data/osie \\
        --predictions scanpaths.csv --out result.json

    python -m code.evaluate compare A/result.json B/result.json --out comparison.json

Saliency: DIR holds one ``<image stem>.npy`` per stimulus at its original height × width.
Scanpaths: a CSV with columns image,subject,fix_index,x,y,duration_ms,onset_ms (0-based pixels).
``--images FILE`` (one stimulus name per line) or ``--split RUN/split.json`` (that run's test
images) scores a subset. ``--kind saliency-map --fit-density-on DIR`` with ``--fit-images FILE`` or
``--fit-split RUN/split.json`` (its train images): DIR holds the maps of those training images,
on which the benchmark's map-to-density conversion is fitted; LL and IG are then reported.
``compare``: per metric, A − B on the images both scored, with its bootstrap 95 % interval and
paired tests (Wilcoxon signed-rank, t).

Settings come from the strict config loader, as a run's do: ``EVAL`` (configs/_base_/runtime.yaml),
the data set's ``DATA.CENTERBIAS`` (configs/_base_/data/<data set>.yaml, else loading.yaml),
``MAP_DENSITY`` and ``SCANPATH`` (configs/_base_/evaluate.yaml); ``--cfg FILE`` replaces any of
them (a run's config.yaml scores as that run did), ``--opts KEY VALUE ...`` single keys.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from yacs.config import CfgNode

from code.config import EVALUATE_SCHEMA, load_nodes
from code.data.build import add_dataset_options, dataset_from_options
from code.data.centerbias import CenterBias
from code.data.gaze import GazeDataset
from code.data.splits import read_image_list, read_split, select_images
from code.engine.model_scoring import centre_bias_model, evaluation_workers
from code.metrics.baselines import (
    EvaluationBaselines,
    LeaveOneSubjectOutGoldStandard,
)
from code.metrics.comparison import compare_results, format_comparison, read_result
from code.metrics.dataset_scoring import (
    SaliencySettings,
    evaluate_saliency,
    format_table,
    sim_optimisation,
)
from code.metrics.evaluator import KINDS, SALIENCY_MAP
from code.metrics.map_density import MapDensityFit, MapDensityOptions, fit_map_density
from code.metrics.predictions import load_prediction, prediction_files
from code.metrics.report import SaliencyReport, write_report
from code.utils.cli import add_debug_option, run_command

BASE_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "_base_"


def prepare_output(parser: argparse.ArgumentParser, out: Path, overwrite: bool) -> None:
    """Make ``out``'s folder and check it can be written, before any work; an existing file is
    replaced only with ``--overwrite``."""
    if out.is_dir():
        parser.error(f"--out {out} is a folder: name the JSON file to write")
    if out.exists() and not overwrite:
        parser.error(f"--out {out} exists: pass --overwrite to replace it, or name another file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out {out}: cannot create its folder: {err}")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        parser.error(f"--out {out}: not writable")


def settings_files(dataset: str, cfg: Path | None) -> list[Path]:
    """Where the settings are read: ``configs/_base_/``'s runtime (``EVAL``), the data set's
    own file (``DATA.CENTERBIAS``), or for a data set without one (``csv``, ``pysaliency``)
    the loading settings every data set shares, ``evaluate.yaml``, then ``--cfg``."""
    own = BASE_CONFIGS / "data" / f"{dataset}.yaml"
    data = own if own.is_file() else BASE_CONFIGS / "data" / "loading.yaml"
    files = [BASE_CONFIGS / "runtime.yaml", data, BASE_CONFIGS / "evaluate.yaml"]
    return files if cfg is None else [*files, cfg]


def check_fit_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--fit-density-on``'s companions, checked before any work."""
    named = args.fit_images is not None or args.fit_split is not None
    if args.fit_density_on is None:
        if named:
            parser.error("--fit-images/--fit-split name the images of --fit-density-on DIR")
        return
    if args.kind != SALIENCY_MAP:
        parser.error(f"--fit-density-on converts saliency maps: it needs --kind {SALIENCY_MAP}")
    if not named:
        parser.error("--fit-density-on needs --fit-images FILE or --fit-split RUN/split.json")
    if not args.fit_density_on.is_dir():
        parser.error(f"--fit-density-on {args.fit_density_on}: no such folder")


def fit_training_images(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    full: GazeDataset,
    scored: GazeDataset,
) -> GazeDataset:
    """The training images of the density fit: a subset of the data set, none of them scored."""
    if args.fit_images is not None:
        names, source = read_image_list(args.fit_images), str(args.fit_images)
    else:
        names, source = read_split(args.fit_split, full.name, "train"), str(args.fit_split)
    train = select_images(full, names, source)
    overlap = sorted({s.id for s in train.stimuli} & {s.id for s in scored.stimuli})
    if overlap:
        parser.error(
            f"{source}: {len(overlap)} training image(s) of the density fit are also scored "
            f"(e.g. {overlap[:5]}): score held-out images (--images or --split)"
        )
    return train


def fit_density(args: argparse.Namespace, cfg: CfgNode, train: GazeDataset) -> MapDensityFit:
    """The map-to-density conversion fitted on ``train``'s maps in ``--fit-density-on``, with
    the centre bias of its fixations (``DATA.CENTERBIAS``), as ``MAP_DENSITY`` says."""
    options = MapDensityOptions(
        cfg.MAP_DENSITY.KNOTS, cfg.MAP_DENSITY.DOWNSAMPLE, cfg.MAP_DENSITY.ITERATIONS
    )
    files = prediction_files(train, args.fit_density_on, extra_allowed=True)
    center_bias = CenterBias(cfg.DATA.CENTERBIAS.BANDWIDTH, cfg.DATA.CENTERBIAS.UNIFORM_WEIGHT)
    maps = (load_prediction(p, s) for p, s in zip(files, train.stimuli, strict=True))
    fit = fit_map_density(train, maps, center_bias.fit(train), options)
    print(
        f"map density fitted on {fit.training['images']} images of {args.fit_density_on}: "
        f"σ {fit.sigma:.2f} px, centre-bias weight {fit.center_bias_weight:.3f}, training IG "
        f"{fit.training['information_gain']:.4f} bits/fixation (at 1/{options.downsample} size)"
    )
    return fit


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The command line: what names the inputs and outputs; every setting is in the config."""
    parser = argparse.ArgumentParser(
        prog="python -m code.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("saliency", "scanpaths"):
        p = sub.add_parser(name)
        add_dataset_options(p, argv)
        p.add_argument("--predictions", type=Path, required=True)
        p.add_argument("--out", type=Path, required=True)
        subset = p.add_mutually_exclusive_group()
        subset.add_argument(
            "--images", type=Path, help="score only these stimuli: a file, one name per line"
        )
        subset.add_argument(
            "--split", type=Path, help="score only the test images of a run's split.json"
        )
        p.add_argument(
            "--cfg",
            type=Path,
            help="a config whose EVAL, DATA.CENTERBIAS, MAP_DENSITY or SCANPATH nodes replace "
            "configs/_base_/'s (e.g. a run's config.yaml)",
        )
        p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                       help="settings, e.g. EVAL.PROTOCOL benchmark")  # fmt: skip
    compare = sub.add_parser("compare", help="paired comparison of two result.json files")
    compare.add_argument("a", type=Path, metavar="A")
    compare.add_argument("b", type=Path, metavar="B")
    compare.add_argument("--out", type=Path, required=True)
    for command in sub.choices.values():
        command.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        add_debug_option(command)
    sal = sub.choices["saliency"]
    sal.add_argument("--kind", choices=KINDS, required=True, help="what the maps hold")
    sal.add_argument(
        "--fit-density-on",
        type=Path,
        metavar="DIR",
        help="saliency maps of training images (<stem>.npy): fit the benchmark's conversion of "
        "maps to densities on them and their fixations, and report LL and IG",
    )
    fit_subset = sal.add_mutually_exclusive_group()
    fit_subset.add_argument(
        "--fit-images", type=Path, help="the training images of --fit-density-on, one per line"
    )
    fit_subset.add_argument(
        "--fit-split", type=Path, help="--fit-density-on is of the train images of a split.json"
    )
    sal.add_argument("--device", help="where to score (default: cuda when available, else cpu)")
    return parser


def scored_images(args: argparse.Namespace) -> tuple[GazeDataset, GazeDataset]:
    """The whole data set and the images to score (``--images`` / ``--split``)."""
    full = dataset_from_options(args)
    if args.images is not None:
        return full, select_images(full, read_image_list(args.images), str(args.images))
    if args.split is not None:
        return full, select_images(full, read_split(args.split, full.name, "test"), str(args.split))
    return full, full


def score_saliency(
    parser: argparse.ArgumentParser, args: argparse.Namespace, cfg: CfgNode
) -> SaliencyReport:
    full, dataset = scored_images(args)
    fit_on = (
        None if args.fit_density_on is None else fit_training_images(parser, args, full, dataset)
    )
    if len(dataset.stimuli) < cfg.EVAL.CENTERBIAS_FOLDS:
        parser.error(
            f"EVAL.CENTERBIAS_FOLDS {cfg.EVAL.CENTERBIAS_FOLDS}: the centre bias is "
            f"cross-validated over the {len(dataset.stimuli)} scored images; at most that many "
            "folds"
        )
    baselines = EvaluationBaselines.build(
        dataset,
        centre_bias_model(cfg).fit(dataset),
        LeaveOneSubjectOutGoldStandard(None, None).fit(dataset),
        None if fit_on is None else fit_density(args, cfg, fit_on),
    )
    settings = SaliencySettings(
        args.kind,
        cfg.EVAL.PROTOCOL,
        cfg.EVAL.FIXATION_MAP_SIGMA,
        cfg.EVAL.JUDD_JITTER_SEED,
        sim_optimisation(cfg.EVAL.SIM_STEPS),
    )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return evaluate_saliency(
        dataset,
        args.predictions,
        settings,
        baselines,
        torch.device(device),
        evaluation_workers(cfg),
        extra_allowed=dataset is not full,
    )


def score_scanpaths(args: argparse.Namespace, cfg: CfgNode) -> dict:
    from code.metrics.scanpath import Grid, ScanMatchParams, evaluate_scanpaths

    scanpath = cfg.SCANPATH
    params = ScanMatchParams(
        Grid(*scanpath.GRID),
        scanpath.SCANMATCH_THRESHOLD,
        scanpath.SCANMATCH_GAP,
        scanpath.TEMPORAL_BIN_MS,
    )
    return evaluate_scanpaths(scored_images(args)[1], args.predictions, params)


def main(argv: list[str]) -> None:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command == "saliency":
        check_fit_options(parser, args)
    if args.command != "compare":  # settings refused before any work, like a run's
        cfg = load_nodes(settings_files(args.dataset, args.cfg), args.opts, EVALUATE_SCHEMA)
    prepare_output(parser, args.out, args.overwrite)
    if args.command == "compare":
        result = compare_results(read_result(args.a), read_result(args.b), args.a, args.b)
        print(format_comparison(result))
        args.out.write_text(json.dumps(result, indent=2))
    elif args.command == "saliency":
        report = score_saliency(parser, args, cfg)
        print(format_table(report))
        write_report(args.out, report)
    else:
        from code.metrics.scanpath import format_scanpath_table

        result = score_scanpaths(args, cfg)
        print(format_scanpath_table(result))
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_command(main)
