"""Data sets in one internal form (``gaze.py``), batches, and the registered loaders.

Importing this package registers every data set.
"""

from code.data import generated  # noqa: F401
