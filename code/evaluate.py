"""Score predictions made anywhere against a data set's fixations, beside the baselines.

    python -m code.evaluate saliency --dataset osie --root ../shared/data/osie \\
        --predictions DIR --kind log-density --fixation-map-sigma 24 --out result.json
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
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from code.data.build import add_dataset_options, dataset_from_options
from code.data.centerbias import CenterBias
from code.data.gaze import GazeDataset
from code.data.splits import read_image_list, read_split, select_images
from code.metrics.baselines import (
    CrossValidatedCenterBias,
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
from code.metrics.report import write_report
from code.utils.cli import add_debug_option, run_command
from code.utils.parallel import available_cpus


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


def check_fit_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> MapDensityOptions | None:
    """The density fit's options when ``--fit-density-on`` is given, checked before any work."""
    named = args.fit_images is not None or args.fit_split is not None
    if args.fit_density_on is None:
        if named:
            parser.error("--fit-images/--fit-split name the images of --fit-density-on DIR")
        return None
    if args.kind != SALIENCY_MAP:
        parser.error(f"--fit-density-on converts saliency maps: it needs --kind {SALIENCY_MAP}")
    if not named:
        parser.error("--fit-density-on needs --fit-images FILE or --fit-split RUN/split.json")
    if not args.fit_density_on.is_dir():
        parser.error(f"--fit-density-on {args.fit_density_on}: no such folder")
    options = MapDensityOptions(args.fit_knots, args.fit_downsample, args.fit_iterations)
    try:
        options.check()
    except ValueError as err:
        parser.error(f"--fit-*: {err}")
    return options


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


def fit_density(
    args: argparse.Namespace, train: GazeDataset, options: MapDensityOptions
) -> MapDensityFit:
    """The map-to-density conversion fitted on ``train``'s maps in ``--fit-density-on``, with
    the centre bias of its fixations (``--center-bias-*`` settings)."""
    files = prediction_files(train, args.fit_density_on, extra_allowed=True)
    center_bias = CenterBias(args.center_bias_bandwidth, args.center_bias_uniform_weight)
    maps = (load_prediction(p, s) for p, s in zip(files, train.stimuli, strict=True))
    fit = fit_map_density(train, maps, center_bias.fit(train), options)
    print(
        f"map density fitted on {fit.training['images']} images of {args.fit_density_on}: "
        f"σ {fit.sigma:.2f} px, centre-bias weight {fit.center_bias_weight:.3f}, training IG "
        f"{fit.training['information_gain']:.4f} bits/fixation (at 1/{options.downsample} size)"
    )
    return fit


def main(argv: list[str]) -> None:
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
    compare = sub.add_parser("compare", help="paired comparison of two result.json files")
    compare.add_argument("a", type=Path, metavar="A")
    compare.add_argument("b", type=Path, metavar="B")
    compare.add_argument("--out", type=Path, required=True)
    for command in sub.choices.values():
        command.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        add_debug_option(command)
    sal = sub.choices["saliency"]
    sal.add_argument("--kind", choices=KINDS, required=True)
    sal.add_argument(
        "--fixation-map-sigma",
        type=float,
        required=True,
        help="σ in pixels of the Gaussian blurring the empirical fixation map (CC, KLDiv, SIM)",
    )
    sal.add_argument("--protocol", choices=["raw", "benchmark"], default="raw")
    sal.add_argument(
        "--judd-jitter-seed",
        default="42",
        help="seed of pysaliency's AUC-Judd tie-breaking noise, or 'none'",
    )
    sal.add_argument(
        "--center-bias-bandwidth", type=float, default=0.05, help="fraction of the image size"
    )
    sal.add_argument("--center-bias-uniform-weight", type=float, default=0.01)
    sal.add_argument("--center-bias-folds", type=int, default=10)
    sal.add_argument(
        "--sim-steps",
        type=int,
        default=0,
        help="benchmark protocol: steps of the SIM-optimal map search (0: blurred density)",
    )
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
    sal.add_argument("--fit-knots", type=int, default=20, help="knots of the nonlinearity")
    sal.add_argument(
        "--fit-downsample", type=int, default=8, help="maps are area-averaged by this to fit"
    )
    sal.add_argument(
        "--fit-iterations", type=int, default=100, help="LBFGS iterations at most, per σ tried"
    )
    sal.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    sal.add_argument(
        "--workers",
        type=int,
        default=available_cpus(),
        help="threads scoring images (default: every CPU core available, here %(default)s)",
    )
    scan = sub.choices["scanpaths"]
    scan.add_argument(
        "--grid",
        type=int,
        nargs=2,
        default=(5, 5),
        metavar=("X_BINS", "Y_BINS"),
        help="spatial grid of the string-based metrics and ScanMatch",
    )
    scan.add_argument("--scanmatch-threshold", type=float, default=3.5, help="in grid cells")
    scan.add_argument("--scanmatch-gap", type=float, default=0.0)
    scan.add_argument("--temporal-bin-ms", type=float, default=50.0, help="0: no temporal binning")
    args = parser.parse_args(argv)
    if args.command == "saliency" and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    fit_options = check_fit_options(parser, args) if args.command == "saliency" else None
    prepare_output(parser, args.out, args.overwrite)
    if args.command == "compare":
        result = compare_results(read_result(args.a), read_result(args.b), args.a, args.b)
        print(format_comparison(result))
        args.out.write_text(json.dumps(result, indent=2))
        return

    dataset = full = dataset_from_options(args)
    if args.images is not None:
        dataset = select_images(dataset, read_image_list(args.images), str(args.images))
    elif args.split is not None:
        dataset = select_images(
            dataset, read_split(args.split, dataset.name, "test"), str(args.split)
        )
    if args.command == "saliency":
        fit_on = None if fit_options is None else fit_training_images(parser, args, full, dataset)
        if len(dataset.stimuli) < args.center_bias_folds:
            parser.error(
                f"--center-bias-folds {args.center_bias_folds}: the centre bias is cross-validated"
                f" over the {len(dataset.stimuli)} scored images; at most that many folds"
            )
        jitter = None if args.judd_jitter_seed.lower() == "none" else int(args.judd_jitter_seed)
        density = None if fit_on is None else fit_density(args, fit_on, fit_options)
        baselines = EvaluationBaselines.build(
            dataset,
            CrossValidatedCenterBias(
                args.center_bias_bandwidth, args.center_bias_uniform_weight, args.center_bias_folds
            ).fit(dataset),
            LeaveOneSubjectOutGoldStandard(None, None).fit(dataset),
            density,
        )
        settings = SaliencySettings(
            args.kind,
            args.protocol,
            args.fixation_map_sigma,
            jitter,
            sim_optimisation(args.sim_steps),
        )
        result = evaluate_saliency(
            dataset,
            args.predictions,
            settings,
            baselines,
            torch.device(args.device),
            args.workers,
            extra_allowed=args.images is not None or args.split is not None,
        )
        print(format_table(result))
        write_report(args.out, result)
        return
    else:
        from code.metrics.scanpath import (
            Grid,
            ScanMatchParams,
            evaluate_scanpaths,
            format_scanpath_table,
        )

        params = ScanMatchParams(
            Grid(*args.grid), args.scanmatch_threshold, args.scanmatch_gap, args.temporal_bin_ms
        )
        result = evaluate_scanpaths(dataset, args.predictions, params)
        table = format_scanpath_table(result)
    print(table)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_command(main)
