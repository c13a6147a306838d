"""One table of scanpath generators from several ``scanpath_generation`` runs.

    python -m code.scanpath_report --row LABEL RUN_DIR GENERATOR [--row ...] [--out DIR]
        [--update FILE#NAME]

Each ``--row`` takes one generator's row (``NeVA``, ``samples``, ``random``, ``centre``,
``wta``, ``humans``: the keys of the run's ``metrics.json``) from the run in RUN_DIR under
LABEL, in the order given. Every run must have scored the same number of test images and
scanpath length. Three markdown tables, each row naming its run: the scanpath metrics (mean ±
s.e. over images) with the conditional IG of the generators that have a density (— for the
others), each generator minus its own run's random scanpaths, image by image (paired), and the
downstream loss after each fixation.
Prints the tables; ``--out`` writes them to DIR as ``scanpath_table.md``; ``--update`` pastes
them between the markers of a markdown file's block (``code.utils.markdown_tables``), under the
command that regenerates them and followed by each row's ``metrics.json`` and the command that
made its run (its ``run_info.json``); one of the two or both.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

from code.engine.reproducibility import recorded_command
from code.metrics.registry import metric, report_order
from code.metrics.report import ScanpathGenerationReport, read_scanpath_generation
from code.utils.cli import add_debug_option, run_command
from code.utils.markdown_tables import add_output_options, block_text, check_outputs, update_block

TABLE_FILE = "scanpath_table.md"


@dataclass(frozen=True)
class Row:
    """One row of the table: ``generator``'s scores in the run at ``run``, shown as ``label``."""

    label: str
    run: Path
    generator: str
    report: ScanpathGenerationReport


def read_rows(specs: list[list[str]]) -> list[Row]:
    """The rows ``--row LABEL RUN_DIR GENERATOR`` name, each run's generator checked to be
    there, and every run checked to score as many images and fixations as the first."""
    rows = []
    for label, run, generator in specs:
        report = read_scanpath_generation(Path(run) / "metrics.json")
        if generator not in report.metrics:
            raise ValueError(
                f"--row {label!r}: {run}/metrics.json has no generator {generator!r}; it has "
                f"{', '.join(report.metrics)}"
            )
        rows.append(Row(label, Path(run), generator, report))
    first = rows[0].report
    for row in rows[1:]:
        if (row.report.n_images, row.report.length) != (first.n_images, first.length):
            raise ValueError(
                f"--row {row.label!r}: {row.run} scored {row.report.n_images} images, "
                f"{row.report.length} fixations; {rows[0].run} {first.n_images}, {first.length}"
            )
    return rows


def _cell(scores: dict[str, float] | None, signed: bool) -> str:
    if scores is None:
        return "—"
    mean = f"{scores['mean']:+.3f}" if signed else f"{scores['mean']:.3f}"
    return f"{mean} ± {scores['se']:.3f}"


def markdown(rows: list[Row]) -> str:
    """The three tables (see the module docstring) and a line on what was scored."""
    columns = report_order({m for row in rows for m in row.report.metrics[row.generator]})
    names = [m if metric(m).higher_is_better else f"{m} ↓" for m in columns]
    header = ["generator", "run", *names]
    lines = ["| " + " | ".join([*header, "IG (bits/fix)"]) + " |", "|---" * (len(header) + 1) + "|"]
    for row in rows:
        scores = row.report.metrics[row.generator]
        ig = row.report.information_gain(row.generator)
        cells = [_cell(scores.get(m), signed=False) for m in columns]
        cells.append("—" if ig is None else f"{ig:.3f}")
        lines.append(f"| {row.label} | {row.run} | " + " | ".join(cells) + " |")
    lines += ["", "Minus random, image by image (paired, mean ± s.e.; each run's own random):", ""]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        paired = row.report.versus_random.get(row.generator)
        if paired is not None:  # random itself and the humans have none
            cells = [_cell(paired.get(m), signed=True) for m in columns]
            lines.append(f"| {row.label} | {row.run} | " + " | ".join(cells) + " |")
    lines += utility_table(rows)
    first = rows[0].report
    lines += ["", f"{first.n_images} test images, {first.length} fixations per scanpath; IG: "
              "conditional, over the centre bias (— : no density of its own)."]  # fmt: skip
    return "\n".join(lines)


def utility_table(rows: list[Row]) -> list[str]:
    """The downstream loss after t = 1..LENGTH fixations (mean over images), a row per
    generator, every scanpath seen through its run's foveation."""
    steps = range(1, rows[0].report.length + 1)
    lines = ["", "The downstream loss after t fixations (mean over images; lower is better):", ""]
    lines += ["| generator | run | " + " | ".join(f"t = {t}" for t in steps) + " |",
              "|---" * (len(steps) + 2) + "|"]  # fmt: skip
    for row in rows:
        curve = row.report.utility[row.generator]["mean"]
        lines.append(f"| {row.label} | {row.run} | " + " | ".join(f"{v:.4f}" for v in curve) + " |")
    return lines


def block(rows: list[Row], text: str, target: str) -> str:
    """The text ``--update`` writes: the command that regenerates it, the tables, and per row
    its run's ``metrics.json`` and the command that made that run."""
    argv = [a for row in rows for a in ("--row", row.label, str(row.run), row.generator)]
    command = "uv run python -m code.scanpath_report " + shlex.join([*argv, "--update", target])
    made_by = [recorded_command(row.run / "run_info.json") for row in rows]
    sources = [(row.label, str(row.run / "metrics.json"), made)
               for row, made in zip(rows, made_by, strict=True)]  # fmt: skip
    return block_text(command, [(text, sources)])


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        prog="python -m code.scanpath_report",
        description=__doc__.split("\n")[0],
        epilog="--out, --update or both; every path as given (run from the repository root)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--row",
        nargs=3,
        action="append",
        required=True,
        metavar=("LABEL", "RUN_DIR", "GENERATOR"),
        help="a table row: the GENERATOR of the run in RUN_DIR, as LABEL",
    )
    add_output_options(parser, "folder for the table", "a table")
    add_debug_option(parser)
    return parser


def main(argv: list[str] | None = None) -> str:
    parser = build_parser()
    args = parser.parse_args(argv)
    labels = [label for label, _, _ in args.row]
    if len(set(labels)) != len(labels):
        parser.error(f"two rows share a label in {labels}")
    check_outputs(parser, args, TABLE_FILE, "a table")
    rows = read_rows(args.row)
    text = markdown(rows)
    generated = None if args.update is None else block(rows, text, str(args.update))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / TABLE_FILE).write_text(text + "\n")
    if generated is not None:
        update_block(args.update, generated)
    print(text)
    return text


if __name__ == "__main__":
    run_command(main)
