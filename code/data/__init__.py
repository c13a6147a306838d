"""Data sets in one internal form (``gaze.py``), batches, and the registered loaders.

Importing ``code.data`` registers every data set in ``code.registry.DATASETS``.
"""

from code.data import generated, patches, samples, segments  # noqa: F401  (imported to register parts)
from code.data.loaders import (  # noqa: F401  (imported to register the loaders)
    cat2000,
    coco_freeview,
    concat,
    csv_layout,
    image_folder,
    mit1003,
    osie,
    pysaliency_hdf5,
    salicon,
    scene500,
    stl10,
)
