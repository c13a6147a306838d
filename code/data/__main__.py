"""Data-set tools: ``python -m code.data summary --dataset NAME --root PATH [--split S] [--json]``.

The options after ``--dataset`` are the chosen loader's own parameters (the same keys a config
sets under ``DATA.DATASET.<NAME>``), e.g. ``--root`` for every loader, ``--split`` for SALICON.
"""

from __future__ import annotations

import argparse
import json
import sys

import code.data  # noqa: F401  (registers the loaders)
from code.data.summary import format_summary, summarize
from code.registry import DATASETS


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m code.data")
    parser.add_argument("command", choices=["summary"])
    parser.add_argument("--dataset", required=True, choices=DATASETS.names())
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    known, _ = parser.parse_known_args(argv)
    for key in DATASETS.schema(known.dataset):
        parser.add_argument(f"--{key.lower()}", required=True)
    args = parser.parse_args(argv)
    loader = DATASETS.get(args.dataset)
    dataset = loader(
        **{key.lower(): getattr(args, key.lower()) for key in DATASETS.schema(args.dataset)}
    )
    summary = summarize(dataset)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
