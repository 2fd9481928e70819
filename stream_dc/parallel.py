"""Numpy work on independent slices of an array, shared among a few threads.

Offline synthesis spends most of its time in element-wise numpy work on ``(frames, bins)`` arrays (the mask
refiner, frame by frame; the Wiener step, bin by bin). Numpy releases the GIL inside its loops, so threads share
such work across cores, and slices small enough to stay in the CPU's caches make each thread faster too. A standard
library thread pool serves: the work items are a handful of slices per segment, each a few milliseconds.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class SlicePool:
    """``run(work, total, size)`` calls ``work(part)`` for consecutive slices ``part`` of ``range(total)``, ``size``
    long (the last shorter), on ``threads`` threads (1: in the calling thread, in order), and returns when all are
    done. ``work`` must only write its own slice of the output. An error in one cancels the slices not yet begun
    and is raised."""

    def __init__(self, threads: int = 1):
        self.threads = max(1, threads)
        self._executor: ThreadPoolExecutor | None = None
        self._starting = threading.Lock()  # two callers of one pool start one executor

    def run(self, work: Callable[[slice], None], total: int, size: int) -> None:
        parts = [slice(start, min(start + size, total)) for start in range(0, total, max(1, size))]
        if self.threads == 1 or len(parts) < 2:
            for part in parts:
                work(part)
            return
        with self._starting:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="stream-dc numpy")
        futures = [self._executor.submit(work, part) for part in parts]
        try:
            for future in futures:
                future.result()
        except BaseException:  # an error, or Ctrl-C: the slices not yet begun are not wanted any more
            for future in futures:
                future.cancel()
            raise

    def close(self) -> None:
        with self._starting:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


SERIAL = SlicePool(1)  # the calling thread alone
