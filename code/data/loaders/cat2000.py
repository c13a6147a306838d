"""CAT2000 training set (Borji & Itti, 2015), as released in trainSet.zip.

On disk::

    <root>/trainSet/Stimuli/<Category>/<n>.jpg          2000 images, 20 categories, 1920×1080
    <root>/trainSet/FIXATIONLOCS/<Category>/<n>.mat     ``fixLocs``: an H×W binary map, 1 where
                                                        some observer fixated

The release's per-subject scanpaths (``allFixData.mat``) are a MATLAB ``containers.Map``, an
object scipy cannot read, so this loader reads the pooled fixation locations: each non-zero
pixel (row r, column c) becomes one fixation at x = c, y = r (0-based). They carry **no subject,
order, onset or duration**: every image gets one pseudo-scanpath with subject 0, fixations in
raster order, NaN times. Use CAT2000 for saliency (density) metrics, not for scanpath models or
leave-one-subject-out baselines. ``Stimuli/<Category>/Output/`` folders are not stimuli.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from code.data.gaze import GazeDataset, Scanpath
from code.data.loaders.common import (
    build_dataset,
    file_stimulus,
    load_mat,
    mat_variable,
    natural_key,
)
from code.registry import DATASETS


@DATASETS.register("cat2000")
def load_cat2000(root: str) -> GazeDataset:
    """Read the CAT2000 training set under ``root`` (the folder holding ``trainSet/``)."""
    base = Path(root) / "trainSet"
    images = sorted(
        (base / "Stimuli").glob("*/*.jpg"), key=lambda p: (p.parent.name, natural_key(p.name))
    )
    if not images:
        raise FileNotFoundError(f"no images under {base / 'Stimuli'}/<Category>/*.jpg")
    stimuli, scanpaths, skipped = [], [], Counter()
    for i, image in enumerate(images):
        stimulus = file_stimulus(image, f"{image.parent.name}/{image.name}")
        stimuli.append(stimulus)
        mat_path = base / "FIXATIONLOCS" / image.parent.name / f"{image.stem}.mat"
        locs = mat_variable(
            load_mat(mat_path, squeeze_me=True, struct_as_record=False), "fixLocs", mat_path
        )
        if locs.shape != stimulus.size:
            raise ValueError(
                f"{mat_path}: fixLocs is {locs.shape}, its image {image} is {stimulus.size}"
            )
        rows, cols = np.nonzero(locs)
        if len(rows) == 0:
            skipped["image with no fixation locations"] += 1
            continue
        nan = np.full(len(rows), np.nan)
        scanpaths.append(Scanpath(i, 0, cols.astype(np.float64), rows.astype(np.float64), nan, nan))
    return build_dataset(
        "cat2000", stimuli, scanpaths, (skipped, Counter()), [base / "FIXATIONLOCS"]
    )
