"""Generated blocks in markdown files: text a command writes between two marker lines,

    <!-- generated-table NAME -->
    ...
    <!-- end generated-table NAME -->

and nothing outside them. ``code.report`` and ``code.scanpath_report`` paste their tables this
way (``--update FILE#NAME``); the tests read every block of the documentation back. Marker
lines inside fenced code blocks are text, not markers (a page may show the syntax).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"<!-- (end )?generated-table (\S+) -->")
NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class BlockTarget:
    """Where ``--update FILE#NAME`` writes: the block NAME of the markdown file FILE."""

    path: Path
    name: str

    def __str__(self) -> str:
        return f"{self.path}#{self.name}"


def parse_target(value: str) -> BlockTarget:
    """``FILE#NAME`` as a target (argparse's ``type``): a file and a block name of letters,
    digits, ``_``, ``.`` and ``-``."""
    path, _, name = value.rpartition("#")
    if not path or not NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected FILE#NAME, NAME of letters, digits, '_', '.', '-'"
        )
    return BlockTarget(Path(path), name)


def add_output_options(parser: argparse.ArgumentParser, out_help: str, replaced: str) -> None:
    """Where a table command writes: ``--out DIR`` (its files there, ``--overwrite`` replacing
    ``replaced``), ``--update FILE#NAME`` (a generated block), or both."""
    parser.add_argument("--out", type=Path, help=out_help)
    parser.add_argument("--overwrite", action="store_true", help=f"replace {replaced} in --out")
    parser.add_argument(
        "--update",
        type=parse_target,
        metavar="FILE#NAME",
        help="write the table, each row's run and the command that made it, and this command "
        "between the lines '<!-- generated-table NAME -->' and '<!-- end generated-table NAME "
        "-->' of the markdown FILE (which must hold them once each); nothing else in FILE "
        "changes. Run from the repository root: the paths are written as given",
    )


def check_outputs(
    parser: argparse.ArgumentParser, args: argparse.Namespace, out_file: str, replaced: str
) -> None:
    """Before any work, a usage error unless ``--out`` or ``--update`` is given, where ``--out``
    holds ``out_file`` (``replaced``) without ``--overwrite``, and an error naming the file and
    block where ``--update``'s block is missing or its markers are broken."""
    if args.out is None and args.update is None:
        parser.error("pass --out DIR, --update FILE#NAME or both")
    if args.out is not None and (args.out / out_file).exists() and not args.overwrite:
        parser.error(f"--out {args.out} holds {replaced}: pass --overwrite to replace it")
    if args.update is not None:
        check_target(args.update)


def block_spans(lines: list[str], source: Path) -> dict[str, tuple[int, int]]:
    """Per block name, the indices of its opening and closing marker lines; an error naming
    ``source``, the line and the block for a marker opened twice, closed without opening, left
    open, or opened inside another block."""
    spans: dict[str, tuple[int, int]] = {}
    open_name, fenced = None, False
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        marker = None if fenced else MARKER.fullmatch(line.strip())
        if marker is None:
            continue
        closing, name = bool(marker.group(1)), marker.group(2)
        where = f"{source}:{index + 1}: generated-table {name!r}"
        if closing and name != open_name:
            inside = "" if open_name is None else f" (block {open_name!r} is open)"
            raise ValueError(f"{where}: closed but not open{inside}")
        if not closing and open_name is not None:
            raise ValueError(f"{where}: opened inside block {open_name!r}")
        if not closing and name in spans:
            raise ValueError(f"{where}: a second block of that name (the first: line "
                             f"{spans[name][0] + 1})")  # fmt: skip
        spans[name] = (spans[name][0], index) if closing else (index, -1)
        open_name = None if closing else name
    if open_name is not None:
        line = spans[open_name][0] + 1
        raise ValueError(f"{source}:{line}: generated-table {open_name!r}: never closed")
    return spans


def _lines(path: Path) -> list[str]:
    """The file's lines with their own line endings (none translated)."""
    return path.read_bytes().decode("utf-8").splitlines(keepends=True)


def read_blocks(path: Path) -> dict[str, str]:
    """Every block of the markdown file ``path``: its name and the text between its markers."""
    lines = _lines(path)
    return {name: "".join(lines[a + 1 : b]) for name, (a, b) in block_spans(lines, path).items()}


def _span(target: BlockTarget, lines: list[str]) -> tuple[int, int]:
    spans = block_spans(lines, target.path)
    if target.name not in spans:
        raise ValueError(
            f"{target.path}: no block {target.name!r}: add the lines "
            f"'<!-- generated-table {target.name} -->' and "
            f"'<!-- end generated-table {target.name} -->' where the table goes"
        )
    return spans[target.name]


def check_target(target: BlockTarget) -> None:
    """An error naming the file and block when the file is missing, lacks the block, or any of
    its markers is broken (checked before a command does its work)."""
    _span(target, _lines(target.path))


def update_block(target: BlockTarget, text: str) -> None:
    """Replace the text between the markers of the block ``target`` names by ``text`` (set off
    by blank lines, so that markdown reads the markers as lines of their own)."""
    lines = _lines(target.path)
    start, end = _span(target, lines)
    newline = "\r\n" if lines[start].endswith("\r\n") else "\n"
    inside = [line + newline for line in ["", *text.strip("\n").split("\n"), ""]]
    target.path.write_bytes("".join([*lines[: start + 1], *inside, *lines[end:]]).encode("utf-8"))


def block_text(command: str, sections: list[tuple[str, list[tuple[str, str, str]]]]) -> str:
    """A generated block: ``Regenerate: `command```, then each section's table followed by, per
    row (label, file, made_by), the file the row was read from and the command that made it."""
    parts = [f"Regenerate: `{command}`"]
    for table, rows in sections:
        items = [f"- {label}: `{file}`, made by `{made_by}`" for label, file, made_by in rows]
        parts += [table, "\n".join(items)]
    return "\n\n".join(parts)
