"""Pieces every loader shares: image sizes from headers, .mat reading, building the data set.

Errors name the file (and, where there is one, the image, subject and fixation) so a user can
find the bad item in a release of thousands.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from code.data.gaze import Fixations, GazeDataset, Scanpath, Stimulus

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) read from the file header only (PIL opens lazily, nothing is decoded)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError as err:
        raise FileNotFoundError(f"image file not found: {path}") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise OSError(f"cannot read image header of {path}: {err}") from err
    return height, width


def file_stimulus(path: Path, stimulus_id: str) -> Stimulus:
    """A stimulus backed by an image file; its size comes from the file header."""
    height, width = image_size(path)
    return Stimulus(id=stimulus_id, height=height, width=width, path=path)


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``i2`` before ``i10`` (releases number files without padding)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, naturally sorted; an error if there are none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"stimulus folder not found: {folder}")
    paths = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return sorted(paths, key=lambda p: natural_key(p.name))


def load_mat(path: Path, squeeze_me: bool, struct_as_record: bool) -> dict[str, Any]:
    """``scipy.io.loadmat`` whose errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        return scipy.io.loadmat(path, squeeze_me=squeeze_me, struct_as_record=struct_as_record)
    except Exception as err:  # scipy raises many kinds on a damaged file; all mean "unreadable"
        raise ValueError(f"cannot read MATLAB file {path}: {type(err).__name__}: {err}") from err


def mat_variable(mat: dict[str, Any], name: str, path: Path) -> Any:
    if name not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__"))
        raise KeyError(f"{path}: no variable {name!r} (found: {found})")
    return mat[name]


def onto_border(values: np.ndarray, limit: int, adjusted: Counter[str]) -> np.ndarray:
    """Move 0-based coordinates less than one pixel outside [0, limit) onto the border.

    Releases in MATLAB's 1-based convention hold a few fixations in (0, 1) or (limit, limit + 1]:
    on the image for the release (it counts them), outside it by up to one pixel once converted.
    They are kept, moved onto the border, and counted; anything further out stays an error.
    """
    below = (values > -1) & (values < 0)
    above = (values >= limit) & (values < limit + 1)
    if below.any() or above.any():
        adjusted["fixation within 1 px outside the image, moved onto its border"] += int(
            below.sum() + above.sum()
        )
        values = values.copy()
        values[below] = 0.0
        values[above] = np.nextafter(float(limit), 0.0)
    return values


def build_dataset(
    name: str,
    stimuli: list[Stimulus],
    scanpaths: Iterable[Scanpath],
    counts: tuple[Counter[str], Counter[str]],
    sources: list[Path],
) -> GazeDataset:
    """Assemble and validate; a validation error is re-raised naming the annotation files.

    ``counts`` is (skipped, adjusted), see ``GazeDataset``.
    """
    fixations = Fixations.from_scanpaths(list(scanpaths))
    skipped, adjusted = counts
    try:
        return GazeDataset(
            name=name,
            stimuli=stimuli,
            fixations=fixations,
            skipped=skipped,
            adjusted=adjusted,
            sources=sources,
        )
    except ValueError as err:
        files = ", ".join(str(s) for s in sources)
        raise ValueError(f"{err} (read from {files})") from err


def as_vector(values: Any) -> np.ndarray:
    """A 1-D float array; scipy squeezes one-element MATLAB vectors to scalars."""
    return np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()
