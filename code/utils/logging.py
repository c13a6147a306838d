"""One logger for the whole run, and the two debug decorators.

``log_signature`` logs the arguments a constructor received; ``log_shapes`` logs the shapes of
the tensors entering and leaving a ``forward``. Both check one module-level flag per call and
otherwise call straight through, so they cost nothing measurable without ``--debug``.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

LOGGER_NAME = "saccade"
_debug = False

F = TypeVar("F", bound=Callable[..., Any])


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def init_logger(output_dir: Path | None, rank: int, debug: bool) -> logging.Logger:
    """Console on every rank (rank > 0 only warnings), ``log.txt`` in ``output_dir`` on rank 0."""
    global _debug
    _debug = debug
    logger = get_logger()
    logger.handlers.clear()
    logger.propagate = False
    level = logging.DEBUG if debug else logging.INFO
    logger.setLevel(level)
    prefix = f"[rank {rank}] " if rank else ""
    fmt = logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(message)s", "%H:%M:%S")
    console = _AboveProgressBars(sys.stdout)
    console.setLevel(level if rank == 0 else logging.WARNING)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if output_dir is not None and rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(output_dir / "log.txt")
        file.setFormatter(fmt)
        logger.addHandler(file)
    return logger


class _AboveProgressBars(logging.StreamHandler):
    """Console lines written above any progress bar (tqdm clears and redraws it), so --debug's
    shape lines do not run into the bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # as logging.StreamHandler: report, never raise
            self.handleError(record)


def log_signature(init: F) -> F:
    """Decorate ``__init__`` to log, in debug mode, the arguments it was called with."""

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _debug:
            shown = [_describe(a) for a in args] + [
                f"{k}={_describe(v)}" for k, v in kwargs.items()
            ]
            get_logger().debug("%s(%s)", type(self).__name__, ", ".join(shown))
        return init(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def log_shapes(forward: F) -> F:
    """Decorate ``forward`` to log, in debug mode, the shapes of tensors going in and out."""

    @functools.wraps(forward)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _debug:
            return forward(self, *args, **kwargs)
        name = type(self).__name__
        inputs = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
        get_logger().debug("%s.forward in:  %s", name, ", ".join(inputs))
        out = forward(self, *args, **kwargs)
        get_logger().debug("%s.forward out: %s", name, _describe(out))
        return out

    return wrapper  # type: ignore[return-value]


def _is_array(value: Any) -> bool:
    # duck-typed: importing torch here would make every command pay for it before --help
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, type)


def _describe(value: Any) -> str:
    if _is_array(value):
        kind = "Tensor" if type(value).__module__.startswith("torch") else type(value).__name__
        return f"{kind}{tuple(value.shape)}:{str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple) and any(_is_array(v) for v in value):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        items = {k: getattr(value, k) for k in value.__dataclass_fields__}
        return type(value).__name__ + _describe(items)
    return repr(value)
