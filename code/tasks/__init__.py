"""What a run does (``TASK.NAME``); importing this package registers every task (and
the scanpath generator that samples a trained model, ``sampled_scanpaths``)."""

from code.tasks import (  # noqa: F401
    density,
    mim,
    patch_classification,
    probe,
    sampled_scanpaths,
    scanpath_generation,
)
