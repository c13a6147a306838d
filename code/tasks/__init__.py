"""What a run does (``TASK.NAME``); importing this package registers every task."""

from code.tasks import density, mim, probe, scanpath_generation  # noqa: F401
