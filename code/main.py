"""The entry point: config -> distributed init -> the task's data, model, training, evaluation.

    torchrun --nproc_per_node=N -m code.main --cfg FILE [--opts KEY VALUE ...] [--debug]
             [--resume | --overwrite] [--eval-only [--checkpoint PATH]]

also runs as plain ``python -m code.main``. FILE is a run config or a pipeline of them
(``code.engine.pipeline``). The work itself is ``code.experiment``; it is imported after the
arguments and a run config are read, so ``--help``, a mistyped option and a mistyped config key
answer before torch and the parts load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from code.config import is_pipeline_file, load_config
from code.utils.cli import run_command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m code.main", description=__doc__.split("\n")[0])
    parser.add_argument("--cfg", required=True, help="YAML configuration (or pipeline) file")
    parser.add_argument(
        "--opts", nargs="+", default=[], metavar="KEY VALUE", help="override config keys"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="DEBUG logging (constructor args, tensor shapes) and the traceback of any error",
    )
    parser.add_argument(
        "--eval-only", action="store_true", help="evaluate a checkpoint (see --checkpoint)"
    )
    parser.add_argument(
        "--checkpoint", help="the checkpoint --eval-only scores (default: OUTPUT_DIR's best)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue training exactly from OUTPUT_DIR's last checkpoint",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run OUTPUT_DIR holds (with --eval-only: the earlier evaluation)",
    )
    args = parser.parse_args(argv)
    if args.resume and (args.overwrite or args.eval_only):
        parser.error("--resume continues training: not with --overwrite or --eval-only")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run one experiment, or every stage and fold of a pipeline; returns the test report."""
    args = parse_args(argv)
    if is_pipeline_file(Path(args.cfg)):
        from code.experiment import run_pipeline_file

        return run_pipeline_file(args)
    # Read before code.experiment imports torch and every part: a mistyped key answers at once.
    cfg = load_config(args.cfg, args.opts)
    from code.experiment import run_config

    return run_config(cfg, args)


if __name__ == "__main__":
    run_command(main)
