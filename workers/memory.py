"""Giving a worker's freed heap back to the system after a batch job.

A batch task (a report, an export, the consistency check, the orphan scan) allocates tens of
MB for a moment, and some of it in reference cycles (a report's matplotlib figure: ~14,000
objects) that only the cyclic collector frees, whenever its oldest generation next runs: in a
worker that is every few reports, so a pool child's heap saw-toothed 35 MB above what it holds.
What Python does free, glibc keeps inside its heaps for the next allocation. So after each
batch task: a full collection (the start-up heap is frozen, see core/heap.py, so it
walks only what the task left), then malloc_trim(0), which returns free pages to the kernel.
Milliseconds beside a batch job's seconds (bench/job_memory.py measures both); interactive
tasks do not pay it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache

from core.queues import INTERACTIVE, NOTIFICATIONS, queue_for


@cache
def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim  # glibc only (not musl, not macOS)
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def give_back() -> bool:
    """Collect cycles, then return malloc's free pages to the kernel; False where the C library
    cannot (the collection is done all the same)."""
    gc.collect()
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))


def after_task(task_name: str) -> None:
    """After every task of the batch queues (reports, privacy, maintenance)."""
    try:
        queue = queue_for(task_name)
    except ValueError:
        return
    if queue not in (INTERACTIVE, NOTIFICATIONS):
        give_back()
