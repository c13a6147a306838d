"""Scene500 layout (Liang et al., NUS VIP 2015: 500 SUN2012 scenes).

On disk::

    <root>/stimuli/<name>.jpg      N images (natural sort order = row order of the .mat files)
    <root>/tidy/fixations.mat      ``fixations``: an N×S cell array (image × subject); each cell
                                   is K×4 ``[y, x, onset_s, duration_s]`` — the first column is
                                   the row — in MATLAB 1-based pixels of the original image
    <root>/tidy/imgInfo.mat        ``imgInfo.size``: N×2 ``[height, width]``

Conversion: x = col2 - 1, y = col1 - 1, onset and duration × 1000 (ms). Empty cells (a subject
without data for that image) are skipped and counted. Six fixations of the release lie up to
one pixel left of or above the image once converted (1-based values in (0, 1)); they are moved
onto the border and counted as adjusted (``common.onto_border``). Sizes come from
``imgInfo.mat`` and are checked against each image's header, so a mismatched stimulus folder
is caught.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from code.data.gaze import GazeDataset, Scanpath, Stimulus
from code.data.loaders.common import (
    build_dataset,
    image_size,
    list_images,
    load_mat,
    mat_variable,
    onto_border,
)
from code.registry import DATASETS


@DATASETS.register("scene500")
def load_scene500(root: str) -> GazeDataset:
    """Read a data set in the Scene500 layout from ``root``."""
    base = Path(root)
    fix_path, info_path = base / "tidy" / "fixations.mat", base / "tidy" / "imgInfo.mat"
    cells = mat_variable(
        load_mat(fix_path, squeeze_me=False, struct_as_record=True), "fixations", fix_path
    )
    info = mat_variable(
        load_mat(info_path, squeeze_me=True, struct_as_record=False), "imgInfo", info_path
    )
    sizes = np.asarray(info.size, dtype=np.int64).reshape(-1, 2)
    images = list_images(base / "stimuli")
    if not len(images) == len(sizes) == cells.shape[0]:
        raise ValueError(
            f"{base}: {len(images)} images in stimuli/, {len(sizes)} sizes in {info_path}, "
            f"{cells.shape[0]} rows in {fix_path}; they must match"
        )
    stimuli = []
    for path, (height, width) in zip(images, sizes, strict=True):
        header = image_size(path)
        if header != (height, width):
            raise ValueError(
                f"{path}: header says (h, w) = {header}, {info_path} says {(height, width)}"
            )
        stimuli.append(Stimulus(id=path.name, height=int(height), width=int(width), path=path))
    scanpaths, skipped, adjusted = [], Counter(), Counter()
    for i in range(cells.shape[0]):
        for j in range(cells.shape[1]):
            cell = np.asarray(cells[i, j], dtype=np.float64)
            if cell.size == 0:
                skipped["empty cell (subject without data for the image)"] += 1
                continue
            if cell.ndim != 2 or cell.shape[1] != 4:
                raise ValueError(
                    f"{fix_path}: cell ({i + 1}, {j + 1}) has shape {cell.shape}, expected K×4"
                )
            y, x, onset_s, duration_s = cell.T
            x = onto_border(x - 1, stimuli[i].width, adjusted)
            y = onto_border(y - 1, stimuli[i].height, adjusted)
            scanpaths.append(Scanpath(i, j, x, y, onset_s * 1000, duration_s * 1000))
    return build_dataset("scene500", stimuli, scanpaths, (skipped, adjusted), [fix_path, info_path])
