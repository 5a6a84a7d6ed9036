"""The preprocessing flow: one Prefect task per shard; Dask computes inside each shard.

Thin by design (Prefect's own advice): planning, computing and committing are plain functions
in `pipelines`, callable without a server; this module adds the lock, retries for transient
I/O, logs, progress and the run-summary artifact.

Dask: the flow opens one `distributed.Client` (a temporary LocalCluster, or `dask_address`) and
the shard tasks submit per-file work to it. We chose a Client inside tasks over prefect-dask's
DaskTaskRunner: that runner makes each *Prefect task* a Dask task, which would either make
Prefect tasks per sample (milliseconds of API traffic each) or leave the files of a shard
computed one after another; here Prefect sees shards and Dask sees files.
"""
from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.futures import as_completed

from pipelines.cluster import dask_client
from pipelines.execute import Job, ShardResult, commit, prepare, run_shard
from pipelines.progress import ProgressReporter
from pipelines.spec import load_spec
from pipelines.summary import RunSummary
from storage import DatasetLock

TRANSIENT = (OSError, TimeoutError, ConnectionError)


def _retry_on_transient(task, task_run, state) -> bool:
    """Retry a shard only for I/O trouble; a bad sample is an errors-table row, never a retry."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:
        return False
    return False


@task(name="compute-shard", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_retry_on_transient)
def compute_shard(job: Job, index: int, client, reporter: ProgressReporter) -> ShardResult:
    return run_shard(client, job, job.plan.todo[index], reporter.item_done)


@task(name="commit-version", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_retry_on_transient)
def commit_task(job: Job, results: list[ShardResult], seconds: float) -> dict[str, Any]:
    return commit(job, results, seconds)


@flow(name="gdl-preprocess")
def preprocess_flow(spec_path: str, source: str | None = None, output: str | None = None,
                    dask_address: str | None = None, retry_errors: bool = False,
                    wait: float = 0.0, then: list[str] | None = None) -> dict[str, Any]:
    """Run a pipeline spec: plan against the cache, compute changed shards on Dask, publish.

    `then`: deployments ("flow/deployment") to start once this run succeeded (`gdl serve` fills
    it with the training specs that name this spec in `after:`).
    """
    logger = get_run_logger()
    start = time.perf_counter()
    spec = load_spec(spec_path).with_overrides(source=source, output=output, dask_address=dask_address)
    with DatasetLock(spec.output, wait=wait) as lock:
        if lock.recovered:
            logger.warning("took over a stale lock left by process %s on %s (since %s)",
                           lock.recovered.get("pid"), lock.recovered.get("host"), lock.recovered.get("since"))
        job = prepare(spec, retry_errors)
        todo = sum(len(s.files) for s in job.plan.todo)
        logger.info("%s: %d %s files; %d reused unchanged, %d to compute in %d shards -> %s",
                    spec.name, job.plan.file_count, spec.domain, job.plan.reused_files, todo,
                    len(job.plan.todo), spec.output)
        if job.plan.skipped:
            logger.warning("%d files skipped (not a %s format), e.g. %s", len(job.plan.skipped),
                           spec.domain, ", ".join(job.plan.skipped[:3]))
        reporter = ProgressReporter(todo, label=spec.name, log=logger.info)
        results: dict[int, ShardResult] = {}
        if job.plan.todo:
            with dask_client(spec.dask_address) as client:
                futures = {compute_shard.submit(job, i, client, reporter): i for i in range(len(job.plan.todo))}
                for fut in as_completed(list(futures)):
                    results[futures[fut]] = fut.result()
        reporter.close()
        # Shards commit in plan order, so the dataset's row order never depends on timing.
        manifest = commit_task(job, [results[i] for i in sorted(results)], time.perf_counter() - start)
    summary = RunSummary.from_manifest(spec.output, manifest)
    create_markdown_artifact(summary.markdown(), key=_artifact_key(spec.name),
                             description=f"gdl preprocess {spec.name}")
    logger.info(summary.one_line())
    for name in then or []:
        run = run_deployment(name, timeout=0, as_subflow=False)
        logger.info("started %s (flow run %s) after this successful run", name, run.id)
    return summary.to_dict()


def _artifact_key(name: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return "gdl-" + "".join(c if c.isalnum() else "-" for c in name.lower())
