"""Running a spec: plan against the cache, compute the shards, write Parquet, commit.

The one orchestration core: `run_pipeline` (notebooks, tests, `gdl preprocess` without a
Prefect server) and the Prefect flow (flows/preprocess.py) both call `prepare`, compute
(pipelines/on_dask.py `run_job`) and `commit`; the flow only wraps them in tasks and adds logs
and an artifact.

Granularity (shared/DESIGN.md): a *shard* is a group of items (whole files, or records of a
multi-record file) and becomes one Parquet file, written where it is computed (a Dask worker,
or for a few small items one forked child: pipelines/small_runs.py), so sample arrays never
travel through the orchestrator. Dask is imported only when a cluster is used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pipelines.cache import RunPlan, plan_run, version_items
from pipelines.compute import ShardResult
from pipelines.labels import LabelRule, build_label_rule
from pipelines.progress import ProgressReporter
from pipelines.sources import list_source_files
from pipelines.spec import PipelineSpec
from storage import DatasetLock, commit_version, prune_versions
from storage.fs import join, resolve, write_bytes_atomic
from storage.ownership import claim_output

if TYPE_CHECKING:
    from distributed import Client

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


@functools.cache
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


def _places(results: Sequence[ShardResult]) -> dict[str, int]:
    out: dict[str, int] = {}
    for res in results:
        if not res.resumed:
            out[res.place] = out.get(res.place, 0) + 1
    return out


def run_stats(job: Job, results: Sequence[ShardResult], seconds_total: float) -> dict[str, Any]:
    plan = job.plan
    return {"files": plan.file_count, "skipped_files": len(plan.skipped),
            "previous_version": plan.previous_version, "items_reused_whole": plan.reused_items,
            "items_computed": plan.todo_items,
            "shards_reused": len(plan.kept), "shards_resumed": sum(r.resumed for r in results),
            "shards_computed": sum(not r.resumed for r in results),
            "shards_computed_in": _places(results),
            "samples_reused_whole": sum(e["rows"] for e in plan.kept),
            "op_samples_computed": _sum(results, "computed"), "op_samples_reused": _sum(results, "reused"),
            **{k: int(v) for k, v in _sum(results, "counts").items()},   # samples_read, geometry_*
            "seconds_by_stage": {k: round(v, 4) for k, v in _sum(results, "seconds").items()},
            "notes": {k: int(v) for k, v in sorted(_sum(results, "notes").items())},
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
        "software": dict(software_versions()), "run": {**stats, "published": True},
    }
    kept = plan.kept    # whole entries: planning read them from the sidecars (previous_items)
    # Row order: shards by their first item, so reused and new shards interleave as listed.
    shards = sorted(kept + [r.entry for r in results],
                    key=lambda e: (e["first_file"] or "", e.get("first_record", -1)))
    computed = {r.entry["name"]: r.sidecar_rows for r in results if r.sidecar_rows is not None}
    manifest = commit_version(spec.output, shards, [e for s in shards for e in s["errors"]], extra,
                              items=version_items(spec.output, plan, shards, computed))
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

    Computes only when there is something to compute (`compute`: on `client`, in a forked
    child for a few small items, else on a temporary LocalCluster).
    """
    start = time.perf_counter()
    with DatasetLock(spec.output, wait=wait), contextlib.ExitStack() as stack:
        if client is None and _first_run_of_one_large_file(spec):
            from pipelines.cluster import dask_client    # workers boot while this plans
            client = stack.enter_context(dask_client(None, spec.workers, spec.worker_memory, preload=spec.domain))
        job = prepare(spec, retry_errors)
        reporter = ProgressReporter(job.plan.todo_items, label=spec.name, unit="items",
                                    log=log if progress else (lambda _msg: None),
                                    tty=None if progress else False)
        results = compute(job, client, reporter.items_done)
        reporter.close()
        manifest = commit(job, results, time.perf_counter() - start)
        if progress and log:
            log_notes(manifest, log)
        return manifest


def log_notes(manifest: dict[str, Any], log: Callable[[str], None]) -> None:
    """One line per distinct warning the ops gave in this run, with how often (a batched op
    warns once for all the samples of a shard it concerns)."""
    for message, count in manifest["run"].get("notes", {}).items():
        log(f"note: {message} ({count} time{'s' if count > 1 else ''})")


def _first_run_of_one_large_file(spec: PipelineSpec) -> bool:
    """A new dataset from one local file of many records: it will be computed on a cluster, so
    the cluster is started before planning (which reads and hashes the whole file)."""
    from pipelines.small_runs import SMALL_BYTES
    return (spec.dask_address is None and os.path.isfile(spec.source) and os.path.getsize(spec.source) > SMALL_BYTES
            and "://" not in spec.output and not os.path.exists(os.path.join(spec.output, "manifest.json")))


def compute(job: Job, client: Client | None = None, progress: Progress | None = None) -> list[ShardResult]:
    """The plan's shards computed: on `client`; else a few small items in one forked child
    (pipelines/small_runs.py); else on a temporary LocalCluster (spec.workers, spec.worker_memory)."""
    if not job.plan.todo:
        return []
    from pipelines.small_runs import is_small, run_in_child
    if client is None and is_small(job):
        results = run_in_child(job)
        if results is not None:
            for result in results:
                report_shard(progress, result)
            return results
    from pipelines.on_dask import run_job
    if client is not None:
        return run_job(client, job, progress)
    from pipelines.cluster import dask_client
    spec = job.spec
    with dask_client(spec.dask_address, spec.workers, spec.worker_memory) as own:
        return run_job(own, job, progress)


def report_shard(progress: Progress | None, result: ShardResult) -> None:
    if progress is not None:
        progress(result.items, len(result.errors))
