"""Tables of several runs' test metrics, in the layout of the README's results tables.

    python -m code.report RUN_DIR [RUN_DIR ...] [--out DIR] [--update FILE#NAME] [--names NAME ...]

RUN_DIR is a run's folder (its ``metrics.json``, or an evaluation's ``eval/metrics.json``) or a
glob of them, all runs of one kind. Saliency runs (a density model's, ``code.evaluate``'s)
scored on the same images and fixations share one table, with their common baselines below
them: one row per run, the mean of each metric (with its bootstrap 95 % interval in the CSV
where the run has per-image scores). Masked-image-modelling (``mim_pretrain``) and linear-probe
runs share a table of their metrics per test-image count. Prints the markdown; ``--out`` writes
``report.md``, ``report.csv`` and (saliency runs) ``report_ig.png`` (IG per run with its
interval) to DIR; ``--update`` pastes the tables between the markers of a markdown file's block
(``code.utils.markdown_tables``), under the command that regenerates them and each row followed
by the ``metrics.json`` it was read from and the command that made that run (its
``run_info.json``); one of the two or both.
"""

from __future__ import annotations

import argparse
import csv
import glob
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from code.engine.outputs import EVAL_DIR
from code.engine.reproducibility import recorded_command
from code.metrics.registry import report_order
from code.metrics.report import Interval, SaliencyReport, read_json
from code.utils.cli import add_debug_option, run_command
from code.utils.markdown_tables import add_output_options, block_text, check_outputs, update_block

REPORT_FILE = "report.md"  # in --out, beside report.csv and report_ig.png
REPLACED = "a report"

BASELINES = {  # row label of each baseline, in table order
    "center_bias": "centre bias",
    "gold_standard": "gold standard",
    "oracle": "oracle (true density)",
    "uniform": "uniform",
}


@dataclass(frozen=True)
class Layout:
    """A kind of run and its table: the saliency table, or the metrics of a task whose
    ``metrics.json`` holds plain ``metrics`` and ``n_images`` (no baselines), recognised by its
    first column."""

    kind: str
    columns: dict[str, tuple[str, str]]  # metric -> (column title, number format)


SALIENCY = Layout("saliency", {})  # columns: every registered metric the runs have
LAYOUTS = (
    Layout("masked image modelling (mim_pretrain)", {
        "masked_mse": ("masked MSE", ".5f"), "fill_mse": ("fill's MSE", ".5f"),
        "mean_colour_mse": ("mean colour's MSE", ".5f"), "unit_sparsity": ("unit sparsity", ".3f"),
        "population_sparsity": ("population sparsity", ".3f"),
        "decorrelation": ("decorrelation", ".3f"),
    }),
    Layout("linear probe (linear_probe)",
           {"accuracy": ("accuracy", ".4f"), "loss": ("cross-entropy (nats)", ".4f")}),
)  # fmt: skip

# label, metrics, their intervals, and the run (its label) whose metrics.json the row is read from
Row = tuple[str, dict[str, float], dict[str, Interval], str]


@dataclass(frozen=True)
class Table:
    """One table: its metric columns, its rows, its markdown and what was scored (the line
    under it, the plot's title)."""

    columns: list[str]
    rows: list[Row]
    markdown: str
    scored: str


def find_runs(patterns: list[str]) -> list[Path]:
    """The ``metrics.json`` of each run folder named (or matched by a glob), in order."""
    runs = []
    for pattern in patterns:
        folders = sorted(Path(p) for p in glob.glob(pattern)) or [Path(pattern)]
        for folder in folders:
            for candidate in (folder / "metrics.json", folder / EVAL_DIR / "metrics.json"):
                if candidate.is_file():
                    runs.append(candidate)
                    break
            else:
                raise FileNotFoundError(
                    f"{folder}: no metrics.json (nor {EVAL_DIR}/metrics.json): not a finished run"
                )
    return runs


def run_name(metrics_file: Path) -> str:
    folder = metrics_file.parent
    return folder.parent.name if folder.name == EVAL_DIR else folder.name


def group_runs(runs: dict[str, SaliencyReport]) -> list[dict[str, SaliencyReport]]:
    """Runs scored on the same images and fixations, in the order first seen."""
    groups: dict[tuple, dict[str, SaliencyReport]] = {}
    for name, result in runs.items():
        key = (
            result.dataset,
            result.n_images,
            result.n_fixations,
            bool(result.baseline.get("conditional")),
        )
        groups.setdefault(key, {})[name] = result
    return list(groups.values())


def read_run(metrics_file: Path) -> tuple[Layout, Any]:
    """The kind of a run (its layout) and what its ``metrics.json`` holds: a
    :class:`SaliencyReport`, or a plain layout's JSON object."""
    data = read_json(metrics_file, "metrics.json")
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if isinstance(data, dict) and "versus_random" in data:
        raise ValueError(f"{metrics_file}: a scanpath_generation run's: see code.scanpath_report")
    for layout in LAYOUTS:
        if isinstance(metrics, dict) and next(iter(layout.columns)) in metrics:
            if not isinstance(data.get("n_images"), int):
                raise ValueError(f"{metrics_file}: a {layout.kind} run's, but no n_images")
            return layout, data
    return SALIENCY, SaliencyReport.from_json(data, str(metrics_file))


def tables_of(runs: dict[str, tuple[Layout, Any]]) -> tuple[Layout, list[Table]]:
    """The runs' layout and tables; an error listing each run's kind where they differ."""
    kinds = {name: layout.kind for name, (layout, _) in runs.items()}
    if len(set(kinds.values())) > 1:
        listing = ", ".join(f"{name}: {kind}" for name, kind in kinds.items())
        raise ValueError(f"runs of different kinds share no table ({listing}): report each kind "
                         "by itself")  # fmt: skip
    layout = next(iter(runs.values()))[0]
    contents = {name: content for name, (_, content) in runs.items()}
    if layout is SALIENCY:
        return layout, [saliency_table(group) for group in group_runs(contents)]
    return layout, plain_tables(layout, contents)


def _columns(group: dict[str, SaliencyReport]) -> list[str]:
    """Every metric of the group's runs, in the README's order (information first)."""
    return report_order({m for r in group.values() for m in r.metrics})


def _rows(group: dict[str, SaliencyReport]) -> list[Row]:
    """One per run, then one per baseline of the group's first run (read from its file)."""
    rows = [(name, r.metrics, r.uncertainty.get("model", {}), name) for name, r in group.items()]
    first_name, first = next(iter(group.items()))
    for baseline, label in BASELINES.items():
        if baseline in first.baselines:
            spread = first.uncertainty.get(baseline, {})
            rows.append((label, first.baselines[baseline], spread, first_name))
    return rows


def _markdown_lines(header: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    lines = ["| | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    return lines + [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]


def saliency_table(group: dict[str, SaliencyReport]) -> Table:
    """The README's saliency table of runs scored alike (the IG interval where known)."""
    columns, rows = _columns(group), _rows(group)
    with_interval = any("IG" in spread for _, _, spread, _ in rows)
    header = ["IG", "IG 95% CI", *columns[1:]] if with_interval else columns
    body = []
    for label, metrics, spread, _ in rows:
        cells = [f"{metrics[m]:.3f}" if m in metrics else "—" for m in columns]
        if with_interval:
            ig = spread.get("IG")
            cells.insert(1, "—" if ig is None else f"[{ig.ci95[0]:.3f}, {ig.ci95[1]:.3f}]")
        body.append((label, cells))
    first = next(iter(group.values()))
    scored = f"{first.n_images} test images, {first.n_fixations} fixations"
    return Table(
        columns, rows, "\n".join([*_markdown_lines(header, body), "", scored + "."]), scored
    )


def plain_tables(layout: Layout, runs: dict[str, dict]) -> list[Table]:
    """One table per test-image count: the layout's columns first, in its titles and formats,
    then any other metric of the runs."""
    groups: dict[int, list[Row]] = {}
    for name, data in runs.items():
        groups.setdefault(data["n_images"], []).append((name, data["metrics"], {}, name))
    tables = []
    for n_images, rows in groups.items():
        present = list(dict.fromkeys(m for row in rows for m in row[1]))
        columns = [m for m in layout.columns if m in present]
        columns += [m for m in present if m not in layout.columns]
        formats = [layout.columns.get(m, (m, ".4g")) for m in columns]
        body = [(label, [format(metrics[m], f) if m in metrics else "—"
                         for m, (_, f) in zip(columns, formats, strict=True)])
                for label, metrics, _, _ in rows]  # fmt: skip
        lines = _markdown_lines([title for title, _ in formats], body)
        scored = f"{n_images} test images"
        tables.append(Table(columns, rows, "\n".join([*lines, "", scored + "."]), scored))
    return tables


def write_csv(path: Path, tables: list[Table]) -> None:
    with path.open("w", newline="") as file:
        table = csv.writer(file)
        table.writerow(["table", "row", "metric", "value", "se", "ci95_low", "ci95_high"])
        for k, t in enumerate(tables):
            for label, metrics, spread, _ in t.rows:
                for metric in t.columns:
                    if metric not in metrics:
                        continue
                    s = spread.get(metric)
                    interval = ["", "", ""] if s is None else [s.se, *s.ci95]
                    table.writerow([k, label, metric, metrics[metric], *interval])


def plot_ig(path: Path, tables: list[Table]) -> None:
    """IG of every run (and baseline) with its 95 % interval where known, one panel per table."""
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 3.6), squeeze=False)
    for ax, table in zip(axes[0], tables, strict=True):
        rows = [(label, m["IG"], s.get("IG")) for label, m, s, _ in table.rows if "IG" in m]
        labels, values = [r[0] for r in rows], [r[1] for r in rows]
        errors = [[0.0, 0.0] if s is None else [v - s.ci95[0], s.ci95[1] - v]
                  for (_, v, s) in rows]  # fmt: skip
        ax.bar(labels, values, yerr=list(zip(*errors, strict=True)), capsize=3, color="#5b6ea8")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("IG (bits/fixation) over the centre bias")
        ax.set_title(table.scored, fontsize=9)
        ax.tick_params(axis="x", rotation=35, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def block(args: argparse.Namespace, tables: list[Table], files: dict[str, Path]) -> str:
    """The text ``--update`` writes: the command that regenerates it, then each table with,
    per row, the ``metrics.json`` it was read from and the command that made that run."""
    names = ["--names", *args.names] if args.names else []
    command = shlex.join([*args.runs, *names, "--update", str(args.update)])

    def source(run: str) -> str:
        return recorded_command(files[run].parent / "run_info.json")

    sections = [(table.markdown, [(label, str(files[run]), source(run))
                                  for label, _, _, run in table.rows])
                for table in tables]  # fmt: skip
    return block_text(f"uv run python -m code.report {command}", sections)


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        prog="python -m code.report",
        description=__doc__.split("\n")[0],
        epilog="--out, --update or both; every path as given (run from the repository root)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", help="run folders or globs of them")
    parser.add_argument("--names", nargs="+", help="row labels, one per run (default: folder)")
    add_output_options(parser, "folder for the report files", REPLACED)
    add_debug_option(parser)
    return parser


def main(argv: list[str] | None = None) -> str:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_outputs(parser, args, REPORT_FILE, REPLACED)
    files = find_runs(args.runs)
    if args.names is not None and len(args.names) != len(files):
        parser.error(f"--names gives {len(args.names)} labels for {len(files)} runs")
    names = args.names or [run_name(f) for f in files]
    if len(set(names)) != len(names) or set(names) & set(BASELINES.values()):
        parser.error(f"row labels {names} repeat one another or a baseline's: pass --names")
    by_name = dict(zip(names, files, strict=True))
    layout, tables = tables_of({name: read_run(file) for name, file in by_name.items()})
    text = "\n\n".join(table.markdown for table in tables)
    generated = None if args.update is None else block(args, tables, by_name)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / REPORT_FILE).write_text(text + "\n")
        write_csv(args.out / "report.csv", tables)
        if layout is SALIENCY:
            plot_ig(args.out / "report_ig.png", tables)
    if generated is not None:
        update_block(args.update, generated)
    print(text)
    return text


if __name__ == "__main__":
    run_command(main)
