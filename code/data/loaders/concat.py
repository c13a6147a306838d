"""Data sets made of data sets: several read as one (``concat``, e.g. OSIE and Scene500 stimuli
for masked image modelling), and the parts of one data set's split (``split_part``, e.g. OSIE's
training and validation images, so that pretraining never sees the images a later run tests on).

``DATA.DATASET.CONCAT.DATASETS`` lists data sets like ``DATA.TRANSFORMS`` lists transforms:
``NAMES`` and one node per name. Stimulus ids get their data set's name as a prefix
(``osie/1001.jpg``), so they stay unique; the fixations keep their images, and subject and
scanpath ids are offset so that no two data sets share one (subjects differ across releases).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from code.data.gaze import Fixations, GazeDataset
from code.data.splits import split_indices
from code.registry import DATASETS, SubPart, SubParts


@DATASETS.register("concat")
def load_concat(datasets: SubParts[DATASETS]) -> GazeDataset:
    """The data sets ``datasets`` lists, one after the other."""
    if len(datasets) < 2:
        raise ValueError(
            f"DATA.DATASET.CONCAT.DATASETS.NAMES must list at least two data sets, got "
            f"{[d.name for d in datasets]}"
        )
    return concatenate([factory() for factory in datasets])


@DATASETS.register("split_part")
def load_split_part(
    dataset: SubPart[DATASETS],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    parts: list[str],
) -> GazeDataset:
    """The images of ``dataset`` in ``parts`` (of train, val, test) of the split that
    ``DATA.SPLIT`` with these ``VAL_FRACTION``, ``TEST_FRACTION`` and ``SEED`` makes of it (no
    folds) — the same images as a run with that split uses."""
    if not parts or not set(parts) <= {"train", "val", "test"}:
        raise ValueError(f"DATA.DATASET.SPLIT_PART.PARTS must list train, val or test, got {parts}")
    whole = dataset()
    split = split_indices(np.arange(len(whole.stimuli)), val_fraction, test_fraction, seed)
    images = np.sort(np.concatenate([getattr(split, part) for part in parts]))
    chosen = whole.subset(images)
    chosen.name = f"{whole.name}-{'+'.join(parts)}"
    return chosen


def concatenate(parts: list[GazeDataset]) -> GazeDataset:
    stimuli, tables = [], []
    skipped: Counter[str] = Counter()
    adjusted: Counter[str] = Counter()
    subjects = trains = 0
    for part in parts:
        fix = part.fixations
        tables.append(
            replace(
                fix,
                image=fix.image + len(stimuli),
                subject=fix.subject + subjects,
                train=fix.train + trains,
            )
        )
        subjects += int(fix.subject.max()) + 1 if len(fix) else 0
        trains += int(fix.train.max()) + 1 if len(fix) else 0
        stimuli += [replace(s, id=f"{part.name}/{s.id}") for s in part.stimuli]
        skipped.update({f"{part.name}: {k}": v for k, v in part.skipped.items()})
        adjusted.update({f"{part.name}: {k}": v for k, v in part.adjusted.items()})
    return GazeDataset(
        name="+".join(part.name for part in parts),
        stimuli=stimuli,
        fixations=Fixations.concatenate(tables),
        skipped=skipped,
        adjusted=adjusted,
        sources=[source for part in parts for source in part.sources],
        parts=[(part.name, len(part.stimuli)) for part in parts],
    )
