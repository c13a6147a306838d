"""Strip a run's checkpoint to the model alone: weights, configuration and provenance.

    python -m code.export CHECKPOINT OUT

CHECKPOINT is a run's ``best.pt`` (or ``last.pt``); OUT gets the weights, the resolved
configuration and the run's ``run_info`` (commit, command), without the optimizer, scheduler or
random states a resume needs: the file ``code.predict --checkpoint`` takes, and the form the
shipped default model (``models/default/model.pt``) has. Like every checkpoint it holds only
tensors and plain data, so loading it runs no code. An existing OUT is refused unless
``--overwrite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from code.engine.checkpoint import Checkpointer
from code.utils.cli import add_debug_option, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m code.export", description=__doc__.split("\n")[0]
    )
    parser.add_argument("checkpoint", type=Path, help="a run's best.pt or last.pt")
    parser.add_argument("out", type=Path, help="the model file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    add_debug_option(parser)
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists: pass --overwrite to replace it")
    weights = Checkpointer.export_model(args.checkpoint, args.out)
    size = args.out.stat().st_size / 1e6
    print(f"{args.out}: {weights:,} weights, {size:.2f} MB, from {args.checkpoint}")


if __name__ == "__main__":
    run_command(main)
