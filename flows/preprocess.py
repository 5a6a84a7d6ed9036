"""The preprocessing flow: plan, compute on Dask, commit: three Prefect tasks.

Thin by design (Prefect's own advice): planning, computing and committing are the plain
functions of pipelines/execute.py that `run_pipeline` also uses; this module adds the lock,
retries for transient I/O, logs, progress and the run-summary artifact.

Dask: the flow opens one `distributed.Client` (a temporary LocalCluster, or `dask_address`) and
submits one Dask task per shard. We chose a Client inside a task over prefect-dask's
DaskTaskRunner: that runner makes each *Prefect task* a Dask task, which would make Prefect tasks
per shard or per sample (milliseconds of API traffic each); here Prefect sees the three stages
of a run and Dask sees the shards.
"""
from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from pipelines.cluster import dask_client
from pipelines.compute import ShardResult
from pipelines.execute import Job, commit, log_notes, prepare
from pipelines.on_dask import run_job
from pipelines.progress import ProgressReporter
from pipelines.spec import load_spec
from pipelines.summary import RunSummary
from storage import DatasetLock

TRANSIENT = (OSError, TimeoutError, ConnectionError)


def _retry_on_transient(task, task_run, state) -> bool:
    """Retry for I/O trouble only; a bad sample is an errors-table row, never a retry. Finished
    shards are found by name on the retry, so it only computes what is left."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:
        return False
    return False


@task(name="plan", cache_policy=NO_CACHE)
def plan_task(spec, retry_errors: bool) -> Job:
    return prepare(spec, retry_errors)


@task(name="compute-shards", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_retry_on_transient)
def compute_task(job: Job, dask_address: str | None, reporter: ProgressReporter) -> list[ShardResult]:
    spec = job.spec
    with dask_client(dask_address, spec.workers, spec.worker_memory) as client:
        return run_job(client, job, reporter.items_done)


@task(name="commit-version", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_retry_on_transient)
def commit_task(job: Job, results: list[ShardResult], seconds: float) -> dict[str, Any]:
    return commit(job, results, seconds)


@flow(name="gdl-preprocess")
def preprocess_flow(spec_path: str, source: str | None = None, output: str | None = None,
                    dask_address: str | None = None, retry_errors: bool = False,
                    wait: float = 0.0, then: list[str] | None = None) -> dict[str, Any]:
    """Run a pipeline spec: plan against the cache, compute changed shards on Dask, publish.

    `then`: deployments ("flow/deployment") to start once this run published a new version
    (`gdl serve` fills it with the training specs that name this spec in `after:`); a run that
    changed nothing starts none of them.
    """
    logger = get_run_logger()
    start = time.perf_counter()
    spec = load_spec(spec_path).with_overrides(source=source, output=output, dask_address=dask_address)
    with DatasetLock(spec.output, wait=wait) as lock:
        if lock.recovered:
            logger.warning("took over a stale lock left by process %s on %s (since %s)",
                           lock.recovered.get("pid"), lock.recovered.get("host"), lock.recovered.get("since"))
        job = plan_task(spec, retry_errors)
        log_plan(job, logger.info, logger.warning)
        reporter = ProgressReporter(job.plan.todo_items, label=spec.name, unit="items", log=logger.info)
        results = compute_task(job, spec.dask_address, reporter) if job.plan.todo else []
        reporter.close()
        manifest = commit_task(job, results, time.perf_counter() - start)
        log_notes(manifest, logger.info)
    summary = RunSummary.from_manifest(spec.output, manifest)
    create_markdown_artifact(summary.markdown(), key=_artifact_key(spec.name),
                             description=f"gdl preprocess {spec.name}")
    logger.info(summary.one_line())
    for name in (then or []) if summary.published else []:
        run = run_deployment(name, timeout=0, as_subflow=False)
        logger.info("started %s (flow run %s) after this run published version %s", name, run.id,
                    summary.version)
    return summary.to_dict()


def log_plan(job: Job, info, warning) -> None:
    spec, plan = job.spec, job.plan
    info("%s: %d %s files; %d items reused unchanged, %d to compute in %d shards -> %s",
         spec.name, plan.file_count, spec.domain, plan.reused_items, plan.todo_items, len(plan.todo),
         spec.output)
    if plan.skipped:
        warning("%d files skipped (not a %s format), e.g. %s", len(plan.skipped), spec.domain,
                ", ".join(plan.skipped[:3]))


def _artifact_key(name: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return "gdl-" + "".join(c if c.isalnum() else "-" for c in name.lower())
