"""Data sets in one internal form (``gaze.py``), batches, and the registered loaders."""
