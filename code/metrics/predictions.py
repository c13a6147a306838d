"""Predictions made anywhere, as ``code.evaluate`` reads them: a folder with one map per
stimulus at its original height × width, named ``<image stem>`` plus one of ``MAP_SUFFIXES``:
``.npy``, a ``.mat`` file holding one 2-D numeric variable, or a grey-level image (``.png``,
``.jpg``: a saliency map, as other tools and the MIT benchmark write them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from code.data.gaze import GazeDataset, Stimulus


def stimulus_stem(stimulus: Stimulus) -> str:
    return stimulus.path.stem if stimulus.path is not None else Path(stimulus.id).stem


MAP_SUFFIXES = (".npy", ".mat", ".png", ".jpg", ".jpeg")
IMAGE_MAP_SUFFIXES = (".png", ".jpg", ".jpeg")  # saliency maps only: no log-density fits


def prediction_files(dataset: GazeDataset, directory: Path, extra_allowed: bool) -> list[Path]:
    """One map per stimulus (``<stem>`` + one of ``MAP_SUFFIXES``), in stimulus order; missing
    files and two maps for one stem are errors, and so are extra ones unless ``extra_allowed``
    (a subset of the data set is scored)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"predictions directory not found: {directory}")
    expected = [stimulus_stem(s) for s in dataset.stimuli]
    present: dict[str, list[Path]] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in MAP_SUFFIXES:
            present.setdefault(path.stem, []).append(path)
    doubled = [paths for paths in present.values() if len(paths) > 1]
    if doubled:
        raise ValueError(
            f"{directory}: two maps for one image, e.g. {[p.name for p in doubled[0]]}"
        )
    missing = [s for s in expected if s not in present]
    extra = (
        [] if extra_allowed else sorted(present[s][0].name for s in set(present) - set(expected))
    )
    if missing or extra:
        raise ValueError(
            f"{directory}: predictions do not match the {len(expected)} stimuli of {dataset.name}: "
            f"{len(missing)} missing (e.g. {missing[:5]}), {len(extra)} extra (e.g. {extra[:5]}); "
            f"maps are named <image stem> + one of {', '.join(MAP_SUFFIXES)}"
        )
    return [present[stem][0] for stem in expected]


def load_prediction(path: Path, stimulus: Stimulus) -> np.ndarray:
    try:
        array = _read_map(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read as a {path.suffix} map: {err}") from err
    if array.shape != stimulus.size:
        raise ValueError(
            f"{path}: shape {array.shape} but stimulus {stimulus.id!r} is "
            f"{stimulus.height}x{stimulus.width} (height x width)"
        )
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path}: dtype {array.dtype} is not numeric")
    return array


def _read_map(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path)
    if suffix == ".mat":
        variables = {
            name: value
            for name, value in scipy.io.loadmat(path).items()
            if not name.startswith("__") and np.ndim(value) == 2
        }
        if len(variables) != 1:
            raise ValueError(f"one 2-D variable expected, found {sorted(variables) or 'none'}")
        return next(iter(variables.values()))
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))  # grey levels; a colour map's luminance
