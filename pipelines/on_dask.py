"""Computing a planned run's shards on a Dask cluster (pipelines/execute.py plans and commits).

Each shard is one Dask task that reads its items, computes them and writes the shard on the
worker, so sample arrays never travel through the orchestrator. A shard whose worker dies (out
of memory, a crash in native code) is run once more with each item as its own task; an item
that kills its worker again becomes an error row (`worker-died`) and the shard is written
without it. No restart loops: the scheduler is told to give up on a task at its first worker
death (pipelines/cluster.py).
"""
from __future__ import annotations

from distributed import Client, Future, as_completed
from distributed import wait as wait_for

from pipelines.cache import ShardPlan
from pipelines.cluster import is_worker_death
from pipelines.compute import ShardResult, compute_shard, died_result, process_item, resumed, write_items
from pipelines.execute import Job, Progress, report_shard


def _submit_shard(client: Client, job: Job, shard: ShardPlan) -> Future:
    spec = job.spec
    return client.submit(compute_shard, spec.output, shard, spec.domain, spec.ops, job.labels,
                         spec.layout(), pure=False, key=f"shard-{shard.name}")


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
    futures: dict[Future, int] = {}
    for i, shard in enumerate(todo):
        results[i] = resumed(uri, shard)
        if results[i] is not None:
            report_shard(progress, results[i])
        else:
            futures[_submit_shard(client, job, shard)] = i
    for fut in as_completed(futures):
        i = futures[fut]
        if fut.status == "error" and is_worker_death(fut.exception()):
            results[i] = _isolated_retry(client, job, todo[i])
        else:
            results[i] = fut.result()
        report_shard(progress, results[i])
    return [results[i] for i in range(len(todo))]
