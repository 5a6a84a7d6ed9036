"""The Dask cluster a run computes on: a temporary LocalCluster, or an existing scheduler."""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
from typing import Iterator

import dask
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin
from distributed.comm.core import CommClosedError

from pipelines.machine import default_workers


def _start_method() -> str:
    """How worker processes start. `fork` copies this process, whose imports (numpy, RDKit,
    pyarrow, the readers and ops) are then already done: ~0.1 s for a cluster against ~3 s
    with `spawn` (bench/RESULTS.md, "Scale"). Forking is safe only while this process runs no
    other thread (a Prefect flow runs several); otherwise a `forkserver`, started once."""
    return "fork" if threading.active_count() == 1 else "forkserver"


def _import_work_modules() -> None:
    # Imported before the fork so that every worker starts with them loaded.
    import gdl_data.ops  # noqa: F401
    import gdl_data.readers  # noqa: F401
    import pipelines.compute  # noqa: F401
    from storage.arrays import skip_pandas_probe
    gdl_data.readers.supported_extensions("mesh")   # loads every domain's reader module
    # pyarrow's first array build imports pandas (its probe). Workers forked before that did it
    # themselves, and hung in it at their first task, the cluster idle: run_pipeline called
    # from a script (the CLI skipped the probe already; the test suite had imported pandas).
    skip_pandas_probe()
    # What is loaded now lives as long as the process: out of the cycle collector's scans, in
    # this process and in every worker forked from it (Python's advice for pre-fork servers).
    gc.freeze()


@contextlib.contextmanager
def dask_client(address: str | None = None, n_workers: int | None = None,
                memory_per_worker: str | None = None, preload: str | None = None) -> Iterator[Client]:
    """Connect to `address`, or start a temporary LocalCluster of worker *processes*.

    Processes, one thread each: the operators hold the GIL in parts (Python glue, SuperLU), so
    threads would not use the cores. `n_workers`: default one per core; `memory_per_worker`
    (e.g. "4GB"): each worker's budget, default the machine's memory / workers. A worker that
    passes 95 % of its budget is killed by its nanny; the scheduler then gives up on that task at
    once (allowed-failures 0) instead of retrying it on the next worker, and the orchestrator
    turns it into an error row (pipelines/execute.py). The cluster is closed on exit; an
    existing one is left alone (its own allowed-failures applies there).

    `preload`: a domain whose reader libraries (gdl_data.readers.preload) each worker imports as
    it starts; the client is then handed back at once, the workers booting meanwhile (a caller
    plans its run in that time; tasks wait for them on the scheduler).
    """
    if address:
        with Client(address) as client:
            yield client
        return
    _import_work_modules()
    # Workers see this process's environment as it is now (credentials, endpoints): a fork
    # server started earlier would otherwise hand them the environment of its own start.
    # One BLAS thread per worker, or N workers x N threads oversubscribe the cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    settings = {"distributed.worker.multiprocessing-method": _start_method(),
                "distributed.scheduler.allowed-failures": 0,
                # Two tasks per worker thread, the rest queued on the scheduler: a worker starts
                # its next shard without a round trip to the scheduler (≈ 4 ms, in this busy
                # process, between each two shards: 4 % of a 6,000-molecule first run). A worker
                # that dies takes both down; pipelines/on_dask.py runs the one that had not
                # started again whole, the one that had item by item.
                "distributed.scheduler.worker-saturation": 2.0,
                # Dask's sampling profiler takes each worker's GIL every 10 ms to read its
                # stack (for the dashboard).
                "distributed.worker.profile.enabled": False,
                # Each process's event loop wakes every 20 ms to measure its own lag, and polls
                # CPU, memory and disk counters every 0.5 s, taking the GIL from a worker's task
                # each time; a run's figures are in its manifest, not on a dashboard.
                "distributed.admin.tick.interval": "500ms",
                "distributed.admin.system-monitor.interval": "2s"}
    # Importing distributed set its loggers to INFO (over the CLI's quieting), and forked
    # workers inherit that: each printed its start banner, plugins and shutdown, 50 lines a run.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    n_workers = n_workers or default_workers()
    with dask.config.set(settings):
        cluster = LocalCluster(n_workers=0 if preload else n_workers, threads_per_worker=1, processes=True,
                               memory_limit=memory_per_worker or "auto", dashboard_address=":0",
                               silence_logs=logging.ERROR, env=env)
        try:
            with Client(cluster) as client:
                if preload:
                    client.register_plugin(_Preload(preload))
                    cluster.scale(n_workers)
                try:
                    yield client
                except BaseException:
                    kill_workers(cluster)
                    raise
        finally:
            close_cluster(cluster)


CLOSE_SECONDS = 10


def close_cluster(cluster: LocalCluster) -> None:
    """Close the cluster, its workers killed if it has not closed within CLOSE_SECONDS: once, in
    a warm server's child after a sample had killed a worker, the close waited for ever on a
    nanny, with every result already written."""
    try:
        cluster.close(timeout=CLOSE_SECONDS)
    except Exception:  # noqa: BLE001 - a timeout or a broken comm: the work is done either way
        kill_workers(cluster)


class _Preload(WorkerPlugin):
    """Each worker imports what reading `domain` needs as it starts, before its first task."""

    def __init__(self, domain: str):
        self.domain = domain

    def setup(self, worker) -> None:
        from gdl_data.readers import preload
        preload(self.domain)


def kill_workers(cluster: LocalCluster) -> None:
    """Interrupted (SIGTERM, Ctrl-C, an error): end the worker processes now. A graceful close
    would wait for the tasks they are running, which can take minutes; their finished shards
    are on disk already, and what they were computing is recomputed by the next run."""
    for nanny in list(cluster.workers.values()):
        process = getattr(getattr(nanny, "process", None), "process", None)
        if process is not None and process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)


def is_worker_death(exc: BaseException | None) -> bool:
    """True when a task failed because the process running it died, not because it raised."""
    return isinstance(exc, (KilledWorker, CommClosedError))
