"""What this machine offers a run: its cores and its memory (no Dask import: small runs use it)."""
from __future__ import annotations

import os


def default_workers() -> int:
    """One worker process per core this process may use (all of them, not a fixed cap)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:       # not Linux
        return max(1, os.cpu_count() or 1)


def total_memory() -> int:
    """Bytes of physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
