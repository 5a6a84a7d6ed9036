"""Running a spec: plan against the cache, compute shards on Dask, write Parquet, commit.

The one orchestration core: `run_pipeline` (notebooks, tests, `gdl preprocess` without a
Prefect server) and the Prefect flow (flows/preprocess.py) both call `prepare`, `run_job` and
`commit`; the flow only wraps them in tasks and adds logs and an artifact.

Granularity (shared/DESIGN.md): a *shard* is a group of items (whole files, or records of a
multi-record file) and becomes one Parquet file. Each shard is one Dask task that reads its
items, computes them and writes the shard on the worker, so sample arrays never travel through
the orchestrator. A shard whose worker dies (out of memory, a crash in native code) is run once
more with each item as its own task; an item that kills its worker again becomes an error row
(`worker-died`) and the shard is written without it. No restart loops: the scheduler is told
to give up on a task at its first worker death (pipelines/cluster.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Sequence

from distributed import Client, Future, as_completed
from distributed import wait as wait_for

from pipelines.cache import RunPlan, ShardPlan, plan_run
from pipelines.cluster import dask_client, is_worker_death
from pipelines.compute import ShardResult, compute_shard, died_result, process_item, write_items
from pipelines.labels import LabelRule, build_label_rule
from pipelines.progress import ProgressReporter
from pipelines.sources import list_source_files
from pipelines.spec import PipelineSpec
from storage import DatasetLock, commit_version, prune_versions, read_shard_entry, shard_done
from storage.fs import join, resolve, write_bytes_atomic
from storage.ownership import claim_output

Progress = Callable[[int, int], None]     # (items finished, of which failed)


@dataclass
class Job:
    """A planned run: the spec, its plan and its label rule. Cheap to send to a worker."""

    spec: PipelineSpec
    plan: RunPlan
    labels: LabelRule | None


def prepare(spec: PipelineSpec, retry_errors: bool = False) -> Job:
    """List the sources and plan the run against the dataset's current version."""
    claim_output(spec.output, spec.name, spec.domain, source=spec.source)  # storage/ownership.py
    files, skipped = list_source_files(spec.source, spec.domain)
    base = os.path.dirname(spec.spec_path) if spec.spec_path else "."
    labels = build_label_rule(spec.labels, files, spec.source, base)
    plan = plan_run(spec, files, retry_errors=retry_errors,
                    labels=dataclasses.asdict(labels) if labels else None)
    plan.skipped = skipped
    return Job(spec, plan, labels)


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
        if shard_done(uri, shard.name):
            entry = read_shard_entry(uri, shard.name)
            results[i] = ShardResult(entry, errors=entry["errors"], resumed=True)
            _report(progress, results[i])
        else:
            futures[_submit_shard(client, job, shard)] = i
    for fut in as_completed(futures):
        i = futures[fut]
        if fut.status == "error" and is_worker_death(fut.exception()):
            results[i] = _isolated_retry(client, job, todo[i])
        else:
            results[i] = fut.result()
        _report(progress, results[i])
    return [results[i] for i in range(len(todo))]


def _report(progress: Progress | None, result: ShardResult) -> None:
    if progress is not None:
        progress(result.items, len(result.errors))


def software_versions() -> dict[str, str]:
    names = ["gdl-data", "numpy", "scipy", "pyarrow", "trimesh", "pyvista", "healpy", "rdkit",
             "networkx", "robust-laplacian", "potpourri3d", "dask", "distributed", "torch"]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _sum(results: Sequence[ShardResult], field: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for res in results:
        for k, v in getattr(res, field).items():
            out[k] = out.get(k, 0) + v
    return out


def run_stats(job: Job, results: Sequence[ShardResult], seconds_total: float) -> dict[str, Any]:
    plan = job.plan
    return {"files": plan.file_count, "skipped_files": len(plan.skipped),
            "previous_version": plan.previous_version, "items_reused_whole": plan.reused_items,
            "items_computed": plan.todo_items,
            "shards_reused": len(plan.kept), "shards_resumed": sum(r.resumed for r in results),
            "shards_computed": sum(not r.resumed for r in results),
            "samples_reused_whole": sum(e["rows"] for e in plan.kept),
            "op_samples_computed": _sum(results, "computed"), "op_samples_reused": _sum(results, "reused"),
            **{k: int(v) for k, v in _sum(results, "counts").items()},   # samples_read, geometry_*
            "seconds_by_stage": {k: round(v, 4) for k, v in _sum(results, "seconds").items()},
            "wall_seconds": round(seconds_total, 3)}


def commit(job: Job, results: Sequence[ShardResult], seconds_total: float) -> dict[str, Any]:
    """Publish the new version: kept shards + new shards, errors, lineage and run statistics.

    A run that changes nothing publishes nothing: it is logged under `runs/` and the current
    manifest is returned (with `published: false` in its `run`).
    """
    spec, plan = job.spec, job.plan
    stats = run_stats(job, results, seconds_total)
    if plan.changes_nothing:
        return log_unpublished_run(spec.output, stats)
    extra = {
        "name": spec.name, "domain": spec.domain, "source": spec.source,
        "ops": [step.describe() for step in spec.ops],
        "recipes": plan.recipes, "layout": spec.layout(),
        "labels": job.labels.describe() if job.labels else None,
        "software": software_versions(), "run": {**stats, "published": True},
    }
    # Reused shards: their full entries (columns, stats, errors) live in their sidecars.
    kept = [read_shard_entry(spec.output, entry["name"]) for entry in plan.kept]
    # Row order: shards by their first item, so reused and new shards interleave as listed.
    shards = sorted(kept + [r.entry for r in results],
                    key=lambda e: (e["first_file"] or "", e.get("first_record", -1)))
    manifest = commit_version(spec.output, shards, [e for s in shards for e in s["errors"]], extra)
    prune_versions(spec.output, spec.keep_versions)
    return manifest


def log_unpublished_run(uri: str, stats: dict[str, Any]) -> dict[str, Any]:
    """Record a run that changed nothing (runs/<time>.json) and return the current manifest."""
    from storage import load_manifest
    manifest = load_manifest(uri)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**9:09d}"
    fs, root = resolve(uri)
    record = {**stats, "published": False, "version": manifest["version"]}
    write_bytes_atomic(fs, join(root, f"runs/{stamp}.json"), json.dumps(record, indent=1).encode())
    return {**manifest, "run": record}


def run_pipeline(spec: PipelineSpec, client: Client | None = None, retry_errors: bool = False,
                 wait: float = 0.0, progress: bool = True, log: Callable[[str], None] | None = None
                 ) -> dict[str, Any]:
    """Run a spec end to end without Prefect (holding the dataset's lock); returns the manifest.

    Starts a temporary LocalCluster (spec.workers, spec.worker_memory) only when there is
    something to compute and no `client` was given.
    """
    start = time.perf_counter()
    with DatasetLock(spec.output, wait=wait):
        job = prepare(spec, retry_errors)
        reporter = ProgressReporter(job.plan.todo_items, label=spec.name, unit="items",
                                    log=log if progress else (lambda _msg: None),
                                    tty=None if progress else False)
        if job.plan.todo and client is None:
            with dask_client(spec.dask_address, spec.workers, spec.worker_memory) as own:
                results = run_job(own, job, reporter.items_done)
        else:
            results = run_job(client, job, reporter.items_done) if job.plan.todo else []
        reporter.close()
        return commit(job, results, time.perf_counter() - start)
