"""Data-set tools: ``python -m code.data summary --dataset NAME --root PATH [--split S] [--json]``.

The options after ``--dataset`` are the chosen loader's own parameters (the same keys a config
sets under ``DATA.DATASET.<NAME>``), e.g. ``--root`` for every loader, ``--split`` for SALICON.
"""

from __future__ import annotations

import argparse
import json

import code.data  # noqa: F401  (registers the loaders)
from code.data.build import add_dataset_options, dataset_from_options
from code.data.summary import format_summary, summarize
from code.utils.cli import add_debug_option, run_command


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The command line; the options after ``--dataset`` in ``argv`` are that loader's own."""
    parser = argparse.ArgumentParser(prog="python -m code.data")
    parser.add_argument("command", choices=["summary"])
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_debug_option(parser)
    add_dataset_options(parser, argv)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser(argv).parse_args(argv)
    summary = summarize(dataset_from_options(args))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":
    run_command(main)
