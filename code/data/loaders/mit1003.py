"""MIT1003 (Judd, Ehinger, Durand, Torralba, ICCV 2009), as released.

On disk::

    <root>/ALLSTIMULI/<stem>.jpeg          1003 images
    <root>/DATA/<subject>/<stem>.mat       one file per subject and image: a variable named
                                           ``<stem>`` (cut to MATLAB's 63 characters), a struct
                                           whose ``DATA(1).eyeData`` holds the raw 240 Hz gaze
                                           samples, columns x, y in MATLAB 1-based image pixels

Fixations are found in the samples exactly as the release's ``checkFixations.m`` does
(``judd_fixations.py``, as pysaliency's ``get_mit1003`` runs it). Then, as Judd et al. do:

- the first fixation of every scanpath (the forced central fixation) is skipped and counted;
- fixations whose median position lies outside the image (blinks, looks off the image) are
  skipped and counted;
- x = median_x - 1, y = median_y - 1 (0-based), kept if 0 <= x < width and 0 <= y < height;
- onset = (first sample - 1) / 240 s, duration from the sample count, both in ms.

Differences from pysaliency, on purpose: pysaliency keeps MATLAB's 1-based coordinates (ours are
one pixel smaller, like every other loader here) and, when the first fixation is off the image,
drops the first *valid* fixation instead; here the first fixation is always the one dropped.
Subjects are the DATA/ folders in sorted order. A missing .mat file is an error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from code.data.gaze import GazeDataset, Scanpath
from code.data.loaders.common import build_dataset, file_stimulus, load_mat, natural_key
from code.data.loaders.judd_fixations import SAMPLING_RATE, check_fixations
from code.registry import DATASETS


@DATASETS.register("mit1003")
def load_mit1003(root: str) -> GazeDataset:
    """Read MIT1003 from the release's ALLSTIMULI/ and DATA/ folders under ``root``."""
    base = Path(root)
    images = sorted((base / "ALLSTIMULI").glob("*.jpeg"), key=lambda p: natural_key(p.name))
    subjects = sorted(p for p in (base / "DATA").glob("*") if p.is_dir())
    if not images or not subjects:
        raise FileNotFoundError(f"{base}: expected ALLSTIMULI/*.jpeg and DATA/<subject>/ folders")
    stimuli = [file_stimulus(p, p.name) for p in images]
    scanpaths, skipped = [], Counter()
    for i, (image, stimulus) in enumerate(zip(images, stimuli, strict=True)):
        for j, subject in enumerate(subjects):
            path = subject / f"{image.stem}.mat"
            fixations = check_fixations(read_eye_data(path, image.stem))
            skipped["initial central fixation (Judd et al.)"] += 1
            x, y = fixations.x[1:] - 1, fixations.y[1:] - 1
            with np.errstate(invalid="ignore"):
                inside = (x >= 0) & (y >= 0) & (x < stimulus.width) & (y < stimulus.height)
            skipped["fixation outside the image (blink or off-image gaze)"] += int((~inside).sum())
            if not inside.any():
                skipped["scanpath empty after the skips above"] += 1
                continue
            onset = (fixations.start[1:][inside] - 1) / SAMPLING_RATE * 1000
            duration = fixations.duration_ms[1:][inside]
            scanpaths.append(Scanpath(i, j, x[inside], y[inside], onset, duration))
    return build_dataset("mit1003", stimuli, scanpaths, (skipped, Counter()), [base / "DATA"])


def read_eye_data(path: Path, stem: str) -> np.ndarray:
    """The (N, 2) gaze samples of one subject on one image; errors name the file."""
    mat = load_mat(path, squeeze_me=True, struct_as_record=False)
    name = stem[:63]
    if name not in mat:
        raise KeyError(f"{path}: no variable {name!r}")
    try:
        record = np.atleast_1d(mat[name].DATA)[0]
        samples = np.asarray(record.eyeData, dtype=np.float64)
    except (AttributeError, IndexError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: expected {name}.DATA(1).eyeData, an N×2 array ({err})") from err
    if samples.ndim != 2 or samples.shape[1] < 2:
        raise ValueError(f"{path}: eyeData has shape {samples.shape}, expected N×2")
    return samples[:, :2]
