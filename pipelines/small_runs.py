"""A run with a few small items to compute: one forked child process, no cluster.

Re-running a dataset after one record of a 100,000-record file changed computes that record
only; starting a Dask cluster for it (importing distributed, starting a scheduler and workers)
would cost ten times the work. Such a run is computed in one child process forked from this
one, so a sample that kills its process (out of memory, a crash in native code) takes down the
child, not the run: the caller then computes the same shards on a cluster, whose isolated retry
turns the culprit into its error row (pipelines/on_dask.py).

A process that is itself a disposable fork, whose parent runs its command again if it dies
while computing, computes here instead (`compute_here`; a warm server's child,
flows/warm_child.py): the fork (≈ 10 ms of a 280 MB process) and a second process's first
writes to its pages are saved, and the isolation comes from the parent's re-run, which forks.
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import pickle
import signal
import threading
from typing import TYPE_CHECKING, Callable, ContextManager

from pipelines.compute import ShardResult, compute_shard, resumed
from pipelines.machine import default_workers, total_memory
from pipelines.spec import PipelineSpec

if TYPE_CHECKING:
    from pipelines.execute import Job

# At most this many items and this much raw input go to a child instead of a cluster.
SMALL_ITEMS = 32
SMALL_BYTES = 1 << 20


def is_small(job: Job) -> bool:
    """A few small items to compute (items copied whole from old shards, e.g. the neighbours of
    an edited record, cost a copy only), and a process that can fork safely (one thread: a
    Prefect flow runs several) and owns no cluster address to use instead."""
    computed = [item for shard in job.plan.todo for item, reuse in zip(shard.items, shard.reuse)
                if not (reuse and reuse.whole)]
    raw = sum(item.stop - item.start for item in computed)
    return (len(computed) <= SMALL_ITEMS and raw <= SMALL_BYTES and job.spec.dask_address is None
            and threading.active_count() == 1 and hasattr(os, "fork"))


def memory_budget(spec: PipelineSpec) -> int:
    """The budget a cluster worker would get: spec.worker_memory, else this machine's memory
    divided among the default workers (what Dask's "auto" gives each)."""
    if spec.worker_memory:
        from dask.utils import parse_bytes
        return parse_bytes(spec.worker_memory)
    return total_memory() // (spec.workers or default_workers())


_HERE: Callable[[], ContextManager] | None = None


def compute_here(guard: Callable[[], ContextManager] | None) -> None:
    """Small runs of this process are computed in it, inside `guard()` (None: in a forked child
    again). Only for a process whose parent notices its death inside the guard and runs the
    command again with small runs forked, as a warm server does for its child: a sample that
    kills the process then still costs one error row, not the run."""
    global _HERE
    _HERE = guard


def _computed(job: Job) -> list[ShardResult]:
    """The plan's shards (those a killed run finished: resumed), in plan order."""
    spec, budget = job.spec, memory_budget(job.spec)
    return [resumed(spec.output, shard) or dataclasses.replace(
        compute_shard(spec.output, shard, spec.domain, spec.ops, job.labels, spec.layout(), budget=budget),
        place="forked process") for shard in job.plan.todo]


def _computed_here(job: Job, guard: Callable[[], ContextManager]) -> list[ShardResult] | None:
    """`_computed` in this process (see `compute_here`); None when it raised, as for a child
    that failed: the cluster path then computes each sample in isolation."""
    try:
        with guard():
            return _computed(job)
    except Exception:  # noqa: BLE001 - the same answer a failed child gives
        return None


def run_in_child(job: Job) -> list[ShardResult] | None:
    """Every shard of the plan computed and written by one forked child (in this process after
    `compute_here`); their results in plan order, or None when the child died or failed
    (nothing is lost: finished shards are on disk and a cluster run resumes them).

    Returns as soon as the child's results are read: the child then only exits, and tearing
    down its copy of this process (≈ 10 ms after a run that loaded pyarrow and RDKit) goes on
    while this one commits. It is reaped before this process ends (`reap_children`)."""
    if _HERE is not None:
        return _computed_here(job, _HERE)
    reap_children()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: compute, send, leave at once
        os.close(read_end)
        code = 1
        try:
            results = _computed(job)
            with os.fdopen(write_end, "wb") as out:
                pickle.dump(results, out)
            code = 0
        finally:
            os._exit(code)                         # no atexit, no second flush of parent buffers
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as src:
            results = _results(src.read(), len(job.plan.todo))
        if results is None:                        # it died or failed: gone or about to be
            os.waitpid(pid, 0)
            return None
    except BaseException:                          # SIGTERM / Ctrl-C: the child goes with us
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _EXITING.append(pid)
    _reap_at_exit()
    return results


def _results(data: bytes, count: int) -> list[ShardResult] | None:
    """The child's whole answer, or None: it wrote none (an exception, a crash) or part of one
    (a pickle cut short does not load)."""
    try:
        results = pickle.loads(data) if data else None
    except Exception:  # noqa: BLE001 - any broken stream is the same: the child failed
        return None
    return results if isinstance(results, list) and len(results) == count else None


_EXITING: list[int] = []          # children whose results were read, not reaped yet


def reap_children() -> None:
    """Wait for the children whose results were read (they only exit): called before the next
    small run and at this process's exit, so none outlives the command as a zombie."""
    while _EXITING:
        try:
            os.waitpid(_EXITING[-1], 0)
        except ChildProcessError:                  # reaped elsewhere already
            pass
        _EXITING.pop()


@functools.cache
def _reap_at_exit() -> None:
    """Once per process: `gdl` (flows/cli.py `entry`) and the warm server's child run atexit
    handlers before they leave."""
    atexit.register(reap_children)
