"""Computing a planned run's shards on a Dask cluster (pipelines/execute.py plans and commits).

Each shard is one Dask task that reads its items, computes them and writes the shard on the
worker, so sample arrays never travel through the orchestrator. A shard whose worker dies (out
of memory, a crash in native code) is run once more with each item as its own task; an item
that kills its worker again becomes an error row (`worker-died`) and the shard is written
without it. No restart loops: the scheduler is told to give up on a task at its first worker
death (pipelines/cluster.py).

A worker holds the next shard while it computes one (pipelines/cluster.py), and a death fails
both, and also a shard it had finished but not yet reported (that one is found on disk, as a
killed run's are). Each task therefore first leaves a mark, an empty file named after its
shard in a folder of the run's: a failed shard with a mark had started, and is the one retried item by item; one
without had only waited, and runs again whole (when no shard left a mark, as on workers that
cannot see the folder, only once: then item by item).
"""
from __future__ import annotations

import contextlib
import os
import tempfile

from distributed import Client, Future, as_completed
from distributed import wait as wait_for

from pipelines.cache import ShardPlan
from pipelines.cluster import is_worker_death
from pipelines.compute import ShardResult, compute_shard, died_result, process_item, resumed, write_items
from pipelines.execute import Job, Progress, report_shard


def _submit_shard(client: Client, job: Job, shard: ShardPlan, marks: str, attempt: int = 0) -> Future:
    spec = job.spec
    return client.submit(_marked, os.path.join(marks, shard.name), spec.output, shard, spec.domain, spec.ops,
                         job.labels, spec.layout(), pure=False, key=f"shard-{shard.name}-{attempt}")


def _marked(mark: str, *args) -> ShardResult:
    """compute_shard(*args), once a mark says this shard started (on the worker)."""
    with contextlib.suppress(OSError):          # a worker on another machine: no mark, see above
        open(mark, "x").close()
    return compute_shard(*args)


def _only_waited(marks: str, name: str, attempt: int) -> bool:
    """A shard whose worker died had not started: it left no mark, and marks reach this folder
    (another shard left one), or it is the shard's first attempt. Each re-run then follows a
    worker death that a started shard caused, and each of those is retried item by item once,
    so re-runs are bounded."""
    return not os.path.exists(os.path.join(marks, name)) and (attempt == 0 or bool(os.listdir(marks)))


def _isolated_retry(client: Client, job: Job, shard: ShardPlan) -> ShardResult:
    """After a worker died on `shard`: each item alone, one at a time (a worker dying then takes
    no other task with it); those that kill a worker again become `worker-died` rows, the others
    are written to the shard as usual. Arrays stay on the workers."""
    spec = job.spec
    items = []
    for i, (item, reuse) in enumerate(zip(shard.items, shard.reuse)):
        fut = client.submit(process_item, item, spec.domain, spec.ops, reuse, job.labels, pure=False,
                            key=f"item-{shard.name}-{i}", share=shard.share, uri=spec.output)
        wait_for(fut)
        if fut.status == "error":
            if not is_worker_death(fut.exception()):
                raise fut.exception()
            fut = client.submit(died_result, item, _DIED, pure=False)
        items.append(fut)
    return client.submit(write_items, spec.output, shard.name, items, spec.layout(), pure=False,
                         key=f"write-{shard.name}").result()


_DIED = ("its worker process died while computing it (out of memory, or a crash in native code), "
         "in its shard and again alone; it is skipped. Give workers more memory (worker_memory, "
         "fewer workers), or ask the op for less")


def run_job(client: Client, job: Job, progress: Progress | None = None) -> list[ShardResult]:
    """Compute every shard to do (resuming those a killed run finished); results in plan order."""
    uri, todo = job.spec.output, job.plan.todo
    results: dict[int, ShardResult] = {}
    with tempfile.TemporaryDirectory(prefix="gdl-started-") as marks:
        shard_of: dict[Future, tuple[int, int]] = {}         # future -> (shard index, attempt)

        def submit(i: int, attempt: int = 0) -> Future:
            fut = _submit_shard(client, job, todo[i], marks, attempt)
            shard_of[fut] = (i, attempt)
            return fut
        for i, shard in enumerate(todo):
            results[i] = resumed(uri, shard)
            if results[i] is not None:
                report_shard(progress, results[i])
        pending = as_completed([submit(i) for i in range(len(todo)) if results[i] is None])
        for fut in pending:
            i, attempt = shard_of.pop(fut)
            if fut.status == "error" and is_worker_death(fut.exception()):
                results[i] = resumed(uri, todo[i])          # it had finished; the word of it died
                if results[i] is not None:
                    report_shard(progress, results[i])
                    continue
                if _only_waited(marks, todo[i].name, attempt):
                    pending.add(submit(i, attempt + 1))         # again, whole
                    continue
                results[i] = _isolated_retry(client, job, todo[i])
            else:
                results[i] = fut.result()
            report_shard(progress, results[i])
    return [results[i] for i in range(len(todo))]
