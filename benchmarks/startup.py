"""Start-up time of every command: ``--help`` (and a config error) against ``import torch``
alone, on the code here and on an earlier commit, each measured the same way in one run.

    uv run python -m benchmarks.startup [--before COMMIT] [--repeats 3]

Each command runs as a fresh ``python -m ...`` process from the repository root (the best of
``--repeats`` wall times); ``--before`` is checked out into a temporary git worktree and run
with the same interpreter. The table goes to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import update_results

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "import torch": ["-c", "import torch"],
    "code.main --help": ["-m", "code.main", "--help"],
    "code.main, unknown key": ["-m", "code.main", "--cfg", "configs/quickstart.yaml",
                               "--opts", "TRAIN.EPOCH", "1"],
    "code.predict --help": ["-m", "code.predict", "--help"],
    "code.evaluate saliency --help": ["-m", "code.evaluate", "saliency", "--help"],
    "code.report --help": ["-m", "code.report", "--help"],
    "code.data --help": ["-m", "code.data", "--help"],
}  # fmt: skip


def best_time(root: Path, args: list[str], repeats: int) -> float:
    """The shortest wall time of ``python ARGS`` run in ``root`` (whatever its exit status)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="d3ff1f1", help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def main(argv: list[str] | None = None) -> str:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.before],
                       cwd=REPO, check=True, capture_output=True)  # fmt: skip
        try:
            rows = {name: (best_time(old, command, args.repeats),
                           best_time(REPO, command, args.repeats))
                    for name, command in COMMANDS.items()}  # fmt: skip
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO)
    torch_before, torch_now = rows["import torch"]
    lines = [f"Best of {args.repeats} runs each, `{args.before}` against this commit, one "
             f"machine ({os.cpu_count()} cores), one run of the script. 'beyond torch': the "
             "command's time less `import torch`'s.", "",
             f"| command | {args.before} (s) | now (s) | beyond torch, {args.before} (s) "
             "| beyond torch, now (s) | speed-up |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, (before, now) in rows.items():
        lines.append(f"| {name} | {before:.2f} | {now:.2f} | {before - torch_before:.2f} "
                     f"| {now - torch_now:.2f} | {before / now:.1f}× |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    update_results(REPO / "benchmarks" / "RESULTS.md", "startup",
                   "## Command start-up: `--help` against `import torch` (`benchmarks/startup.py`)",
                   table)  # fmt: skip
    return table


if __name__ == "__main__":
    main()
