"""One table of several runs' test metrics, in the layout of the README's results tables.

    python -m code.report RUN_DIR [RUN_DIR ...] --out DIR [--names NAME ...]

RUN_DIR is a run's folder (its ``metrics.json``, or an evaluation's ``eval/metrics.json``) or a
glob of them. Runs scored on the same images and fixations share one table, with their common
baselines below them: one row per run, the mean of each metric (with its bootstrap 95 %
interval in the CSV where the run has per-image scores). Writes ``report.md``, ``report.csv``
and ``report_ig.png`` (IG per run with its interval) to DIR, and prints the markdown.
"""

from __future__ import annotations

import argparse
import csv
import glob
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from code.engine.outputs import EVAL_DIR
from code.metrics.registry import report_order
from code.metrics.report import SaliencyReport, read_report
from code.utils.cli import add_debug_option, run_command

BASELINES = {  # row label of each baseline, in table order
    "center_bias": "centre bias",
    "gold_standard": "gold standard",
    "oracle": "oracle (true density)",
    "uniform": "uniform",
}


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


def _columns(group: dict[str, SaliencyReport]) -> list[str]:
    """Every metric of the group's runs, in the README's order (information first)."""
    return report_order({m for r in group.values() for m in r.metrics})


def _rows(group: dict[str, SaliencyReport]) -> list[tuple[str, dict, dict]]:
    """(label, metrics, uncertainty) per run, then per baseline of the group's first run."""
    rows = [(name, r.metrics, r.uncertainty.get("model", {})) for name, r in group.items()]
    first = next(iter(group.values()))
    for baseline, label in BASELINES.items():
        if baseline in first.baselines:
            spread = first.uncertainty.get(baseline, {})
            rows.append((label, first.baselines[baseline], spread))
    return rows


def markdown(groups: list[dict[str, SaliencyReport]]) -> str:
    parts = []
    for group in groups:
        columns, rows = _columns(group), _rows(group)
        with_interval = any("IG" in spread for _, _, spread in rows)
        header = ["IG", "IG 95% CI", *columns[1:]] if with_interval else columns
        lines = ["| | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
        for label, metrics, spread in rows:
            cells = [f"{metrics[m]:.3f}" if m in metrics else "—" for m in columns]
            if with_interval:
                ig = spread.get("IG")
                cells.insert(1, "—" if ig is None else f"[{ig.ci95[0]:.3f}, {ig.ci95[1]:.3f}]")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        first = next(iter(group.values()))
        lines.append("")
        lines.append(f"{first.n_images} test images, {first.n_fixations} fixations.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def write_csv(path: Path, groups: list[dict[str, SaliencyReport]]) -> None:
    with path.open("w", newline="") as file:
        table = csv.writer(file)
        table.writerow(["table", "row", "metric", "value", "se", "ci95_low", "ci95_high"])
        for k, group in enumerate(groups):
            for label, metrics, spread in _rows(group):
                for metric in _columns(group):
                    if metric not in metrics:
                        continue
                    s = spread.get(metric)
                    interval = ["", "", ""] if s is None else [s.se, *s.ci95]
                    table.writerow([k, label, metric, metrics[metric], *interval])


def plot_ig(path: Path, groups: list[dict[str, SaliencyReport]]) -> None:
    """IG of every run (and baseline) with its 95 % interval where known, one panel per table."""
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        rows = [(label, m["IG"], s.get("IG")) for label, m, s in _rows(group) if "IG" in m]
        labels, values = [r[0] for r in rows], [r[1] for r in rows]
        errors = [[0.0, 0.0] if s is None else [v - s.ci95[0], s.ci95[1] - v]
                  for (_, v, s) in rows]  # fmt: skip
        ax.bar(labels, values, yerr=list(zip(*errors, strict=True)), capsize=3, color="#5b6ea8")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("IG (bits/fixation) over the centre bias")
        first = next(iter(group.values()))
        ax.set_title(f"{first.n_images} images, {first.n_fixations} fixations", fontsize=9)
        ax.tick_params(axis="x", rotation=35, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(
        prog="python -m code.report",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", help="run folders or globs of them")
    parser.add_argument("--out", type=Path, required=True, help="folder for the report files")
    parser.add_argument("--names", nargs="+", help="row labels, one per run (default: folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace a report in --out")
    add_debug_option(parser)
    return parser


def main(argv: list[str] | None = None) -> str:
    parser = build_parser()
    args = parser.parse_args(argv)
    files = find_runs(args.runs)
    if args.names is not None and len(args.names) != len(files):
        parser.error(f"--names gives {len(args.names)} labels for {len(files)} runs")
    names = args.names or [run_name(f) for f in files]
    if len(set(names)) != len(names):
        parser.error(f"two runs share a row label in {names}: pass --names")
    runs = {name: read_report(f) for name, f in zip(names, files, strict=True)}
    groups = group_runs(runs)
    if (args.out / "report.md").exists() and not args.overwrite:
        parser.error(f"--out {args.out} holds a report: pass --overwrite to replace it")
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(groups)
    (args.out / "report.md").write_text(text + "\n")
    write_csv(args.out / "report.csv", groups)
    plot_ig(args.out / "report_ig.png", groups)
    print(text)
    return text


if __name__ == "__main__":
    run_command(main)
