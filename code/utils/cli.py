"""How every command ends: a mistake of the user's (a config key, a value, a missing or existing
file, a damaged cache) as one message naming what to fix and exit status 1; an internal error
with its traceback. ``--debug`` shows the traceback of either."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from code.utils.logging import get_logger


class UserError(Exception):
    """A condition the user must fix, of no built-in kind (e.g. a damaged cache)."""


# ValueError is Python's kind for a bad value given (ConfigError is one); the OS errors are files
# that are missing, in the way or unreadable.
USER_ERRORS = (UserError, ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
               NotADirectoryError, PermissionError)  # fmt: skip
EXIT_USER_ERROR = 1


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug", action="store_true", help="debug logging, and the traceback of any error"
    )


def run_command(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> NoReturn:
    """Exit with ``main(argv)``'s status (an int it returns; otherwise 0), or with one message
    and status 1 for a user error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        status = main(argv)
    except USER_ERRORS as err:
        if "--debug" in argv:
            raise
        print(f"error: {err}\n(--debug shows where it was raised)", file=sys.stderr)
        logger = get_logger()  # a run that has a log.txt gets the error there too
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (err,), None)
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(status if isinstance(status, int) else 0)
