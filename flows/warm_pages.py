"""The pages a warm command will write, written ahead by the spare child while it waits (Linux).

A child forked from the warm server shares the server's memory until it writes to it: its first
write to each shared page is a copy-on-write fault. A Python process writes to every object it
uses (reference counts), so a one-record re-run copies ≈ 5,000 of the server's pages, each fault
≈ 5 µs on this 2-core VM: ≈ 13 ms of a ≈ 60 ms command (bench/RESULTS.md, "session 6: pages
written ahead"). The pages are much the same from one command to the next (the same modules'
objects, the same allocator pools), so:

- the server notes, once, which pages of its private writable memory are resident (`resident`);
- each command's child, after its exit status has gone to the client, notes which of those it
  now holds a copy of (`copied`: /proc/self/pagemap's "exclusively mapped" bit) and saves them;
- the next spare writes each saved page's first byte back unchanged (`write_ahead`), in chunks of
  ≈ 1 ms, and stops as soon as its command arrives: the copies are made while it idles.

Writing a byte back unchanged is invisible to the process: the spare is single-threaded (a fork
copies only the thread that forked) and touches only its own private writable mappings. The saved
list is the last command's copies, so a page neither written ahead nor written by a command drops
out; it is capped at MAX_PAGES. Anywhere /proc/self/pagemap cannot be read, or a kernel without
the exclusive bit (before 4.2), every function here does nothing.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MAX_PAGES = 16384                    # 64 MiB of copies in a spare, ≈ 80 ms of writing at most
CHUNK_PAGES = 256                    # ≈ 1 ms of faults between looks at the spare's socket
_PRESENT, _EXCLUSIVE = np.uint64(1 << 63), np.uint64(1 << 56)    # linux/fs/proc/task_mmu.c
_SKIPPED = ("[stack]", "[vvar]", "[vsyscall]", "[vdso]")


def _private_writable() -> np.ndarray:
    """(start, stop) page numbers of this process's private writable mappings, in address order."""
    spans = []
    with open("/proc/self/maps") as fh:
        for line in fh:
            fields = line.split()
            if fields[1][0:2] == "rw" and fields[1][3] == "p" and (len(fields) < 6 or fields[5] not in _SKIPPED):
                lo, hi = fields[0].split("-")
                spans.append((int(lo, 16) // PAGE, int(hi, 16) // PAGE))
    return np.array(spans, dtype=np.int64).reshape(-1, 2)


def _entries(fd: int, lo: int, hi: int) -> np.ndarray:
    return np.frombuffer(os.pread(fd, (hi - lo) * 8, lo * 8), dtype=np.uint64)


def resident() -> np.ndarray:
    """Page numbers of this process's resident private writable pages (the server, once)."""
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return np.zeros(0, np.int64)
    try:
        found = [np.flatnonzero(_entries(fd, lo, hi) & _PRESENT) + lo for lo, hi in _private_writable()]
    except OSError:
        return np.zeros(0, np.int64)
    finally:
        os.close(fd)
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def copied(pages: np.ndarray) -> np.ndarray:
    """Those of `pages` (sorted page numbers) that this process now maps exclusively: in a
    forked child, the shared pages it (or its parent, since the fork) wrote to."""
    if not len(pages):
        return pages
    cuts = np.flatnonzero(np.diff(pages) > 512) + 1       # read the map in clusters, not page by page
    found = []
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return pages[:0]
    try:
        for cluster in np.split(pages, cuts):
            lo = int(cluster[0])
            entries = _entries(fd, lo, int(cluster[-1]) + 1)[cluster - lo]
            found.append(cluster[(entries & _PRESENT).astype(bool) & (entries & _EXCLUSIVE).astype(bool)])
    except OSError:
        return pages[:0]
    finally:
        os.close(fd)
    return np.concatenate(found)


def save(path: str, pages: np.ndarray) -> None:
    """Replace the list at `path` (atomically: a spare may be reading it)."""
    temporary = f"{path}.{os.getpid()}.tmp"               # flows/warm_server.py removes any left
    pages[:MAX_PAGES].astype("<i8").tofile(temporary)
    os.replace(temporary, path)


def load(path: str) -> np.ndarray:
    """The saved list, sorted; empty when there is none or it is torn."""
    try:
        with open(path, "rb") as fh:
            data = fh.read((MAX_PAGES + 1) * 8)
    except OSError:
        return np.zeros(0, np.int64)
    if len(data) % 8:
        return np.zeros(0, np.int64)
    return np.unique(np.frombuffer(data, dtype="<i8"))[:MAX_PAGES]


def write_ahead(pages: np.ndarray, stop: Callable[[], bool]) -> int:
    """Write the first byte of each of `pages` (sorted page numbers) back unchanged, asking
    `stop()` every CHUNK_PAGES; pages outside this process's private writable mappings are
    skipped. Returns the number of pages written. Only for a single-threaded process (the spare)."""
    import ctypes
    if not len(pages):
        return 0
    try:
        spans = _private_writable()
    except OSError:                                   # no /proc/self/maps: not Linux
        return 0
    where = np.searchsorted(spans[:, 0], pages, side="right") - 1
    inside = (where >= 0) & (pages < spans[np.maximum(where, 0), 1])
    pages, where = pages[inside], where[inside]
    done = 0
    for span in np.unique(where):
        lo, hi = (int(x) for x in spans[span])
        mapping = np.frombuffer((ctypes.c_uint8 * ((hi - lo) * PAGE)).from_address(lo * PAGE), dtype=np.uint8)
        offsets = (pages[where == span] - lo) * PAGE
        for start in range(0, len(offsets), CHUNK_PAGES):
            if done and stop():
                return done
            chunk = offsets[start:start + CHUNK_PAGES]
            mapping[chunk] = mapping[chunk]               # read each first byte, write it back
            done += len(chunk)
    return done
