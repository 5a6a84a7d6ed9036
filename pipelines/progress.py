"""Progress of long work: done / total, rate, ETA, failures so far.

On a terminal it draws a rich progress bar; elsewhere (CI, Prefect logs) it writes a plain line
at most every `every` seconds. Thread-safe: shard tasks report from several threads.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable


class ProgressReporter:
    """Call `item_done(failed)` once per finished item (or `items_done(n, failed)` per batch);
    `close()` at the end."""

    def __init__(self, total: int, label: str = "", log: Callable[[str], None] | None = None,
                 every: float = 5.0, unit: str = "files", tty: bool | None = None):
        self.total, self.label, self.every, self.unit = total, label, every, unit
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.done = self.failed = 0
        self.start = time.monotonic()
        self._last = self.start  # the first line after `every` seconds, not at the first item
        self._lock = threading.Lock()
        self._bar = None
        if total and (sys.stderr.isatty() if tty is None else tty):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]:.1f} " + unit + "/s, {task.fields[failed]} failed"),
                                 TimeRemainingColumn())
            self._task = self._bar.add_task(label or unit, total=total, rate=0.0, failed=0)
            self._bar.start()

    def item_done(self, failed: int = 0) -> None:
        self.items_done(1, failed)

    def items_done(self, count: int, failed: int = 0) -> None:
        """`count` more items finished, `failed` of their samples failed."""
        with self._lock:
            self.done += count
            self.failed += failed
            elapsed = time.monotonic() - self.start
            rate = self.done / elapsed if elapsed > 0 else 0.0
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done, rate=rate, failed=self.failed)
            elif time.monotonic() - self._last >= self.every or self.done == self.total:
                self._last = time.monotonic()
                eta = f"{(self.total - self.done) / rate:.0f} s" if rate > 0 else "?"
                self.log(f"{self.label}: {self.done}/{self.total} {self.unit} "
                         f"({100 * self.done / max(self.total, 1):.0f}%), {rate:.1f} {self.unit}/s, "
                         f"ETA {eta}, {self.failed} failed")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
