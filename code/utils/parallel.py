"""Work spread over threads: results in input order, and files written beside other work."""

from __future__ import annotations

import os
import queue
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def ordered_thread_map(
    function: Callable[[Item], Result], items: Iterable[Item], workers: int
) -> Iterator[Result]:
    """``function(item)`` for each item, computed on ``workers`` threads, yielded in order.

    Items are taken from ``items`` lazily by the calling thread, in order, with at most
    2·``workers`` in flight, so an item may carry something drawn in sequence (random numbers)
    and memory stays bounded. Threads pay off when ``function`` spends its time in numpy/torch
    kernels, which release the GIL. ``workers=1`` runs everything on the calling thread.

    Meanwhile torch runs one intra-op thread, whatever ``workers`` is: the workers are the
    parallelism (pools inside pools oversubscribe the cores), and torch's reductions then add
    in the same order on every machine, so results do not depend on the thread count.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if workers == 1:
            yield from map(function, items)
            return
        with ThreadPoolExecutor(workers) as pool:
            pending: deque[Future[Result]] = deque()
            try:
                for item in items:
                    pending.append(pool.submit(function, item))
                    if len(pending) >= 2 * workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:  # an error (or the caller stopping early) leaves nothing queued to run
                for future in pending:
                    future.cancel()
    finally:
        torch.set_num_threads(threads)


Write = Callable[[], object]  # saves one output (a file); may run on another thread


class BackgroundWriter:
    """Writes run in submission order on one thread, beside the caller's work.

    At most ``pending`` writes wait at a time: ``submit`` blocks until there is room, so what
    the waiting writes hold (images, arrays) stays bounded. ``pending=0`` runs each write at
    once, on the calling thread. The first write that raises ends the writing: the writes after
    it are dropped and its error is raised in the calling thread, by every later ``submit`` and
    by ``close``. ``close`` (or leaving the ``with`` block) returns once every write submitted
    before it has run. One thread, not a pool: matplotlib's pyplot, which draws some pictures,
    keeps global state and is not thread-safe.

    While the thread runs, torch computes on one intra-op thread fewer (at least one), so the
    writer has a core of its own: a torch thread sharing its core with the writer would hold up
    its whole team at every parallel region.
    """

    _STOP = object()

    def __init__(self, pending: int) -> None:
        if pending < 0:
            raise ValueError(f"pending must be at least 0, got {pending}")
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=pending)
        self._thread: threading.Thread | None = None
        self._torch_threads = torch.get_num_threads()
        if pending:  # a daemon, so a caller that never closes it cannot hang the interpreter
            torch.set_num_threads(max(1, self._torch_threads - 1))
            self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while (write := self._queue.get()) is not self._STOP:
            if self._error is None:
                try:
                    write()
                except BaseException as error:  # handed to the calling thread
                    self._error = error

    def submit(self, write: Write) -> None:
        """Run ``write`` (a callable of no arguments) after the writes submitted before it."""
        self._raise()
        if self._thread is None:
            write()
        else:
            self._queue.put(write)

    def close(self) -> None:
        """Wait until every submitted write has run; raise the first error of any."""
        if self._thread is not None:
            self._queue.put(self._STOP)
            self._thread.join()
            self._thread = None
            torch.set_num_threads(self._torch_threads)
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:  # kept: every later call raises it again
            raise self._error

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except BaseException as write_error:
            if error is None:
                raise
            if write_error is not error:  # the caller's error propagates, this one is shown
                print("a write failed as well:", file=sys.stderr)
                traceback.print_exception(write_error, file=sys.stderr)
