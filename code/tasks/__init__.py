"""What a run does (``TASK.NAME``); importing this package registers every task."""

from code.tasks import (  # noqa: F401
    density,
    mim,
    patch_classification,
    probe,
    scanpath_generation,
)
