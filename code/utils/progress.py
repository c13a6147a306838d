"""Progress bars that suit where they are written: redrawn in place on a terminal; in a file or
a batch scheduler's log, one plain line at most every ``LOG_INTERVAL_S`` seconds (and at the
end), so a long evaluation leaves tens of lines, not one per item."""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


class _Lines:
    """A stream that writes each of tqdm's redraws (``\\r`` + status) as a line of its own."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


class ProgressBar(tqdm):
    """``tqdm`` on stderr, as lines every ``LOG_INTERVAL_S`` seconds when stderr is no terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        stream = kwargs.pop("file", None) or sys.stderr
        self.redraws = hasattr(stream, "isatty") and stream.isatty()
        if not self.redraws:
            kwargs.setdefault("mininterval", LOG_INTERVAL_S)
            kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
            stream = _Lines(stream)
        super().__init__(*args, file=stream, **kwargs)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        """New figures after the bar; in a log they wait for its next line."""
        super().set_postfix(ordered_dict, refresh=refresh and self.redraws, **kwargs)
