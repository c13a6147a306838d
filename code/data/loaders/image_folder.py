"""Any folder of images, without gaze (e.g. a data set's stimuli for masked image modelling).

``load_image_folder`` lists the image files directly in ``root`` (naturally sorted); each is a
stimulus named by its file name, its size read from the file header.
"""

from __future__ import annotations

from pathlib import Path

from code.data.gaze import Fixations, GazeDataset
from code.data.loaders.common import file_stimulus, list_images
from code.registry import DATASETS


@DATASETS.register("image_folder")
def load_image_folder(root: str) -> GazeDataset:
    """The images in the folder ``root``, as a data set without fixations."""
    folder = Path(root)
    stimuli = [file_stimulus(path, path.name) for path in list_images(folder)]
    return GazeDataset(folder.name, stimuli, Fixations.empty())
