"""Work spread over threads, with results in input order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
