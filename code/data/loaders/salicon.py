"""SALICON (Jiang et al., CVPR 2015), the 2017 (LSUN) release with JSON annotations.

On disk::

    <root>/images/<split>/COCO_<split>2014_<id>.jpg
    <root>/fixations_<split>2014.json   COCO-style: ``images`` [{id, file_name, width, height}],
                                        ``annotations`` [{image_id, worker_id, fixations}],
                                        ``fixations`` a list of [row, col] in 1-based pixels
                                        (the salicon-api builds maps with ``map[r-1][c-1]``)

``split`` is ``train`` or ``val`` (the test split has no fixations). Conversion: x = col - 1,
y = row - 1; no onsets or durations (NaN); one scanpath per annotation, subject = worker_id.
These are mouse-contingent "fixations", not eye-tracking. Sizes come from the JSON and are
checked against the image headers. Annotations with no fixations are skipped and counted.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from code.data.gaze import GazeDataset, Scanpath
from code.data.loaders.common import build_dataset, file_stimulus, onto_border
from code.registry import DATASETS


@DATASETS.register("salicon")
def load_salicon(root: str, split: str) -> GazeDataset:
    """Read one split (``train`` or ``val``) of the SALICON 2017 release under ``root``."""
    base = Path(root)
    json_path = base / f"fixations_{split}2014.json"
    data = read_json(json_path)
    stimuli, index_of = [], {}
    for entry in data["images"]:
        stimulus = file_stimulus(base / "images" / split / entry["file_name"], entry["file_name"])
        if stimulus.size != (entry["height"], entry["width"]):
            raise ValueError(
                f"{json_path}: image {entry['file_name']!r} is {entry['width']}x{entry['height']} "
                f"in the JSON but {stimulus.width}x{stimulus.height} in its file"
            )
        index_of[entry["id"]] = len(stimuli)
        stimuli.append(stimulus)
    scanpaths, skipped, adjusted = [], Counter(), Counter()
    for ann in data["annotations"]:
        if ann["image_id"] not in index_of:
            raise KeyError(
                f"{json_path}: annotation {ann.get('id')} refers to unknown "
                f"image_id {ann['image_id']}"
            )
        points = np.asarray(ann["fixations"], dtype=np.float64).reshape(-1, 2)
        if len(points) == 0:
            skipped["annotation with no fixations"] += 1
            continue
        nan = np.full(len(points), np.nan)
        row, col = points.T
        stim = stimuli[index_of[ann["image_id"]]]
        x, y = (
            onto_border(col - 1, stim.width, adjusted),
            onto_border(row - 1, stim.height, adjusted),
        )
        scanpaths.append(Scanpath(index_of[ann["image_id"]], int(ann["worker_id"]), x, y, nan, nan))
    return build_dataset(f"salicon-{split}", stimuli, scanpaths, (skipped, adjusted), [json_path])


def read_json(path: Path) -> Any:
    """Parse a JSON annotation file; errors name it."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with path.open() as file:
            return json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot parse JSON file {path}: {err}") from err
