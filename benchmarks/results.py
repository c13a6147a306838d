"""Writing a benchmark's block into ``benchmarks/RESULTS.md`` between its script's markers."""

from __future__ import annotations

from pathlib import Path


def update_results(path: Path, script: str, heading: str, block: str) -> None:
    """Replace the block between ``benchmarks/<script>.py``'s markers in ``path``, or append it
    under ``heading`` when the markers are not there yet (a new file starts with the title)."""
    begin = f"<!-- benchmarks/{script}.py: begin -->"
    end = f"<!-- benchmarks/{script}.py: end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    marked = f"{begin}\n{block}\n{end}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        text = before + marked + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{marked}\n"
    path.write_text(text)
