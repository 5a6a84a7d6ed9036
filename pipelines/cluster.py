"""The Dask cluster a run computes on: a temporary LocalCluster, or an existing scheduler."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from distributed import Client, LocalCluster


@contextlib.contextmanager
def dask_client(address: str | None = None, n_workers: int | None = None) -> Iterator[Client]:
    """Connect to `address`, or start a temporary LocalCluster of worker *processes*.

    Processes, one thread each: the operators hold the GIL in parts (Python glue, SuperLU), so
    threads would not use the cores. The cluster is closed on exit; an existing one is left alone.
    """
    if address:
        with Client(address) as client:
            yield client
        return
    workers = n_workers or max(1, min(os.cpu_count() or 1, 4))
    # One BLAS thread per worker, or 2 workers x N threads oversubscribe the cores.
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR,
                      env=env) as cluster, Client(cluster) as client:
        yield client
