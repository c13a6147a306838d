"""Score predictions made anywhere against a data set's fixations, beside the baselines.

    python -m code.evaluate saliency --dataset osie --root ../shared/data/osie \\
        --predictions DIR --kind log-density --fixation-map-sigma 24 --out result.json
    python -m code.evaluate scanpaths --dataset osie --root ../shared/data/osie \\
        --predictions scanpaths.csv --out result.json

    python -m code.evaluate compare A/result.json B/result.json --out comparison.json

Saliency: DIR holds one ``<image stem>.npy`` per stimulus at its original height × width.
Scanpaths: a CSV with columns image,subject,fix_index,x,y,duration_ms,onset_ms (0-based pixels).
``--images FILE`` (one stimulus name per line) or ``--split RUN/split.json`` (that run's test
images) scores a subset. ``compare``: per metric, A − B on the images both scored, with its
bootstrap 95 % interval and paired tests (Wilcoxon signed-rank, t).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from code.data.build import add_dataset_options, dataset_from_options
from code.data.splits import read_image_list, read_split, select_images
from code.metrics.baselines import CrossValidatedCenterBias, LeaveOneSubjectOutGoldStandard
from code.metrics.comparison import compare_results, format_comparison, read_result
from code.metrics.scoring import evaluate_saliency, format_table, sim_optimisation
from code.utils.parallel import available_cpus


def prepare_output(parser: argparse.ArgumentParser, out: Path) -> None:
    """Make ``out``'s folder and check it can be written, before any work."""
    if out.is_dir():
        parser.error(f"--out {out} is a folder: name the JSON file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out {out}: cannot create its folder: {err}")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        parser.error(f"--out {out}: not writable")


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
    sal = sub.choices["saliency"]
    sal.add_argument("--kind", choices=["log-density", "saliency-map"], required=True)
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
    prepare_output(parser, args.out)
    if args.command == "compare":
        result = compare_results(read_result(args.a), read_result(args.b), args.a, args.b)
        print(format_comparison(result))
        args.out.write_text(json.dumps(result, indent=2))
        return

    dataset = dataset_from_options(args)
    if args.images is not None:
        dataset = select_images(dataset, read_image_list(args.images), str(args.images))
    elif args.split is not None:
        dataset = select_images(dataset, read_split(args.split, dataset.name), str(args.split))
    if args.command == "saliency":
        if len(dataset.stimuli) < args.center_bias_folds:
            parser.error(
                f"--center-bias-folds {args.center_bias_folds}: the centre bias is cross-validated"
                f" over the {len(dataset.stimuli)} scored images; at most that many folds"
            )
        jitter = None if args.judd_jitter_seed.lower() == "none" else int(args.judd_jitter_seed)
        result = evaluate_saliency(
            dataset,
            args.predictions,
            args.kind,
            args.protocol,
            args.fixation_map_sigma,
            jitter,
            CrossValidatedCenterBias(
                args.center_bias_bandwidth, args.center_bias_uniform_weight, args.center_bias_folds
            ).fit(dataset),
            LeaveOneSubjectOutGoldStandard(None, None).fit(dataset),
            sim_optimisation(args.sim_steps),
            torch.device(args.device),
            args.workers,
            extra_allowed=args.images is not None or args.split is not None,
        )
        table = format_table(result)
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
    main(sys.argv[1:])
