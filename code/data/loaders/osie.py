"""OSIE layout (Xu et al., JoV 2014; also other NUS releases).

On disk::

    <root>/stimuli/<name>.jpg          the images
    <root>/eye/fixations.mat           MATLAB v5, variable ``fixations``: a 1×N cell array;
                                       entry i is a struct with ``img`` (file name in stimuli/)
                                       and ``subjects``, a 1×S cell; subject j is a struct with
                                       ``fix_x``, ``fix_y`` (pixels, MATLAB 1-based) and
                                       ``fix_duration`` (ms), in temporal order.

Conversion: x = fix_x - 1, y = fix_y - 1 (0-based), durations in ms, onsets unknown (NaN);
fixations less than a pixel outside the image are moved onto its border and counted
(``common.onto_border``; OSIE itself has none).
Subject ids are the position j in ``subjects`` (the same person on every image). A subject
with no fixations on an image is skipped and counted; image files that no entry mentions are
counted too. Image sizes come from the JPEG headers.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from code.data.gaze import GazeDataset, Scanpath
from code.data.loaders.common import (
    as_vector,
    build_dataset,
    file_stimulus,
    list_images,
    load_mat,
    mat_variable,
    onto_border,
)
from code.registry import DATASETS


@DATASETS.register("osie")
def load_osie(root: str) -> GazeDataset:
    """Read a data set in the OSIE layout from ``root``."""
    base = Path(root)
    mat_path = base / "eye" / "fixations.mat"
    entries = np.atleast_1d(
        mat_variable(
            load_mat(mat_path, squeeze_me=True, struct_as_record=False), "fixations", mat_path
        )
    )
    stimuli, scanpaths, skipped, adjusted = [], [], Counter(), Counter()
    for i, entry in enumerate(entries):
        image_path = base / "stimuli" / str(entry.img)
        stimuli.append(file_stimulus(image_path, image_path.name))
        for j, subject in enumerate(np.atleast_1d(entry.subjects)):
            x = onto_border(as_vector(subject.fix_x) - 1, stimuli[i].width, adjusted)
            y = onto_border(as_vector(subject.fix_y) - 1, stimuli[i].height, adjusted)
            duration = as_vector(subject.fix_duration)
            if not len(x) == len(y) == len(duration):
                raise ValueError(
                    f"{mat_path}: image {entry.img!r}, subject {j}: fix_x, fix_y, fix_duration "
                    f"differ in length ({len(x)}, {len(y)}, {len(duration)})"
                )
            if len(x) == 0:
                skipped["subject with no fixations on an image"] += 1
                continue
            onset = np.full(len(x), np.nan)
            scanpaths.append(Scanpath(i, j, x, y, onset, duration))
    unused = {p.name for p in list_images(base / "stimuli")} - {s.id for s in stimuli}
    if unused:
        skipped["image file without an entry in fixations.mat"] += len(unused)
    return build_dataset("osie", stimuli, scanpaths, (skipped, adjusted), [mat_path])
