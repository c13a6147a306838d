"""COCO-FreeView (Chen et al., CVPRW 2022; Yang et al. 2023): free viewing of COCO-Search18 images.

On disk::

    <root>/COCOFreeView_fixations_trainval.json   a list of scanpaths
                                                   {name, subject, split, X, Y, T, length}:
                                                   X/Y pixels of the 1680×1050 stimulus,
                                                   T fixation durations in ms
    <root>/images/**/<name>                        the stimuli (the COCOSearch18-images-TP/-TA
                                                   zips unpacked; sub-folders per category)

``split`` is ``train`` or ``valid`` (the release's own values). X/Y are used as given (as
pysaliency does: the release writes them as 0-based pixel positions); onsets are unknown.
Stimuli are the images some scanpath of the split refers to, in sorted name order. A name
found in two category folders must be the same size in both. Empty scanpaths are skipped and
counted.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from code.data.gaze import GazeDataset, Scanpath
from code.data.loaders.common import IMAGE_SUFFIXES, build_dataset, file_stimulus
from code.data.loaders.salicon import read_json
from code.registry import DATASETS


@DATASETS.register("coco_freeview")
def load_coco_freeview(root: str, split: str) -> GazeDataset:
    """Read one split (``train`` or ``valid``) of COCO-FreeView under ``root``."""
    base = Path(root)
    json_path = base / "COCOFreeView_fixations_trainval.json"
    items = [item for item in read_json(json_path) if item["split"] == split]
    if not items:
        raise ValueError(f"{json_path}: no scanpaths with split {split!r}")
    files = {}
    for path in sorted((base / "images").rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            files.setdefault(path.name, path)
    names = sorted({item["name"] for item in items})
    missing = [n for n in names if n not in files]
    if missing:
        raise FileNotFoundError(
            f"{json_path}: {len(missing)} image(s) not under {base / 'images'}, e.g. {missing[0]!r}"
        )
    stimuli = [file_stimulus(files[n], n) for n in names]
    index_of = {n: i for i, n in enumerate(names)}
    scanpaths, skipped = [], Counter()
    for item in items:
        x, y, duration = (np.asarray(item[k], dtype=np.float64).ravel() for k in ("X", "Y", "T"))
        if not len(x) == len(y) == len(duration):
            raise ValueError(
                f"{json_path}: image {item['name']!r}, subject {item['subject']}: "
                "X, Y, T differ in length"
            )
        if len(x) == 0:
            skipped["empty scanpath"] += 1
            continue
        onset = np.full(len(x), np.nan)
        scanpaths.append(
            Scanpath(index_of[item["name"]], int(item["subject"]), x, y, onset, duration)
        )
    return build_dataset(
        f"coco_freeview-{split}", stimuli, scanpaths, (skipped, Counter()), [json_path]
    )
