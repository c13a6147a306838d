"""The generic layout: how users bring their own data.

On disk::

    <root>/stimuli/<image files>
    <root>/fixations.csv   header ``image,subject,fix_index,x,y,duration_ms,onset_ms``, one row
                           per fixation; ``image`` is a file name in stimuli/, ``subject`` an
                           integer or a name, ``fix_index`` the 0-based position in the
                           scanpath, x (column) / y (row) in 0-based pixels of the original
                           image; empty duration/onset cells mean unknown.
                           Optional ``img_w``, ``img_h`` columns are checked against the headers.

Every image file in stimuli/ is a stimulus (images without fixations included). Integer
subjects keep their ids; names are numbered in sorted order. Fixations of a scanpath are
ordered by ``fix_index``, which must be 0, 1, 2, ... without gaps or repeats.

Fixations outside their image (``OUT_OF_IMAGE``, e.g. eye-tracker noise at the border):
``error`` refuses the table naming the first; ``clip`` moves those less than one pixel outside
onto the border, as the built-in loaders do, and refuses any further out; ``drop`` removes every
one outside (its scanpath keeps the rest, in order). What is moved or dropped is counted and
reported with the data set's summary.
"""

from __future__ import annotations

import csv
import typing
from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

import numpy as np

from code.data.gaze import GazeDataset, Scanpath, Stimulus, stimulus_index
from code.data.loaders.common import build_dataset, file_stimulus, list_images, onto_border
from code.registry import DATASETS

FIXATION_COLUMNS = ("image", "subject", "fix_index", "x", "y", "duration_ms", "onset_ms")
OutOfImage = Literal["error", "clip", "drop"]


@DATASETS.register("csv")
def load_csv_layout(root: str, out_of_image: OutOfImage) -> GazeDataset:
    """Read ``<root>/stimuli/`` + ``<root>/fixations.csv``."""
    base = Path(root)
    stimuli = [file_stimulus(p, p.name) for p in list_images(base / "stimuli")]
    return read_fixation_table(base / "fixations.csv", stimuli, base.name or "csv", out_of_image)


def read_fixation_table(
    csv_path: Path, stimuli: list[Stimulus], name: str, out_of_image: OutOfImage = "error"
) -> GazeDataset:
    """The scanpaths of a ``fixations.csv`` (the layout above) on ``stimuli``, validated like
    any data set (coordinates inside their image, after the ``out_of_image`` policy); ``image``
    names a stimulus by its id or, where that is unambiguous, its file stem."""
    if out_of_image not in typing.get_args(OutOfImage):
        raise ValueError(f"OUT_OF_IMAGE must be one of {typing.get_args(OutOfImage)}, got "
                         f"{out_of_image!r}")  # fmt: skip
    index_of = stimulus_index(stimuli)
    rows = _read_rows(csv_path)
    subject_ids = _subject_ids([r["subject"] for _, r in rows])
    trains: dict[tuple[int, int], list[tuple[int, float, float, float, float]]] = defaultdict(list)
    for line, row in rows:
        where = f"{csv_path}:{line} (image {row['image']!r}, subject {row['subject']!r})"
        if row["image"] not in index_of:
            raise FileNotFoundError(f"{where}: no such image among the stimuli of {name}")
        image = index_of[row["image"]]
        _check_size(row, stimuli[image].size, where)
        try:
            values = [_number(row[k]) for k in ("x", "y", "duration_ms", "onset_ms")]
            fix_index = int(row["fix_index"])
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        if not np.isfinite(values[:2]).all():
            raise ValueError(f"{where}, fixation {fix_index}: x/y missing or not finite")
        trains[image, subject_ids[row["subject"]]].append((fix_index, *values))
    scanpaths = []
    skipped: Counter[str] = Counter()
    adjusted: Counter[str] = Counter()
    for (image, subject), fixations in sorted(trains.items()):
        fixations.sort()
        order = [f[0] for f in fixations]
        if order != list(range(len(order))):
            raise ValueError(
                f"{csv_path}: image {stimuli[image].id!r}, subject {subject}: fix_index must "
                f"be 0..{len(order) - 1} without gaps or repeats, got {order}"
            )
        _, x, y, duration, onset = np.asarray(fixations, dtype=np.float64).T
        height, width = stimuli[image].size
        if out_of_image == "clip":
            x, y = onto_border(x, width, adjusted), onto_border(y, height, adjusted)
        elif out_of_image == "drop":
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            skipped["fixation outside the image, dropped (OUT_OF_IMAGE: drop)"] += int(
                (~inside).sum()
            )
            if not inside.any():
                skipped["scanpath with every fixation outside the image"] += 1
                continue
            x, y, onset, duration = x[inside], y[inside], onset[inside], duration[inside]
        scanpaths.append(Scanpath(image, subject, x, y, onset, duration))
    return build_dataset(name, stimuli, scanpaths, (skipped, adjusted), [csv_path])


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows with their line numbers; an error names any missing column."""
    if not path.is_file():
        raise FileNotFoundError(f"fixation table not found: {path}")
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        missing = [c for c in FIXATION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        return [(line, row) for line, row in enumerate(reader, start=2)]


def _subject_ids(names: list[str]) -> dict[str, int]:
    unique = sorted(set(names))
    if all(n.strip().lstrip("-").isdigit() for n in unique):
        return {n: int(n) for n in unique}
    return {n: i for i, n in enumerate(unique)}


def _number(text: str) -> float:
    return float(text) if text.strip() else float("nan")


def _check_size(row: dict[str, str], size: tuple[int, int], where: str) -> None:
    for key, actual in (("img_h", size[0]), ("img_w", size[1])):
        if row.get(key, "").strip() and int(row[key]) != actual:
            raise ValueError(f"{where}: {key}={row[key]} but the image file has {actual}")
