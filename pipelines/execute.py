"""Running a spec: plan against the cache, compute shards on Dask, write Parquet, commit.

Granularity (shared/DESIGN.md): a *shard* is a group of raw files that becomes one Parquet file;
the orchestrator (Prefect, in flows/) runs one task per shard, and inside it Dask runs one task
per raw file, plus one task that writes the shard on a worker, so sample arrays never travel
through the orchestrator. `run_pipeline` does the same without Prefect, for notebooks and tests.
"""
from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Sequence

from distributed import Client, as_completed

from pipelines.cache import RunPlan, ShardPlan, plan_run
from pipelines.cluster import dask_client
from pipelines.compute import FileResult, process_file
from pipelines.labels import LabelRule, build_label_rule
from pipelines.progress import ProgressReporter
from pipelines.sources import list_source_files
from pipelines.spec import PipelineSpec
from storage.ownership import claim_output
from storage import (DatasetLock, commit_version, infer_infos, prune_versions, read_shard_entry, shard_done,
                     write_shard)



@dataclass
class Job:
    """A planned run: the spec, its plan and its label rule. Cheap to send to a worker."""

    spec: PipelineSpec
    plan: RunPlan
    labels: LabelRule | None


@dataclass
class ShardResult:
    """What a shard task hands back to the orchestrator: metadata only, no arrays."""

    entry: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    resumed: bool = False


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


def _add(into: dict[str, float], more: dict[str, float]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def write_shard_results(uri: str, name: str, results: Sequence[FileResult], row_group_size: int) -> ShardResult:
    """Runs on a worker: gather the records of a shard's files into one Parquet shard."""
    records = [r for res in results for r in res.records]
    files = [{**dataclasses.asdict(res.file), "samples": len(res.records), "errors": res.errors}
             for res in results]
    start = time.perf_counter()
    entry = write_shard(uri, records, infer_infos(records) if records else None, name=name, files=files,
                        row_group_size=row_group_size)
    out = ShardResult(entry, errors=[e for res in results for e in res.errors])
    for res in results:
        _add(out.seconds, res.seconds)
        _add(out.computed, res.computed)
        _add(out.reused, res.reused)
    out.seconds["write"] = time.perf_counter() - start
    return out


def run_shard(client: Client, job: Job, shard: ShardPlan, progress: Callable[[int], None] | None = None
              ) -> ShardResult:
    """Compute one shard on the cluster and write it; blocks until the shard is on disk.

    A shard finished by an earlier, interrupted run (its sidecar exists) is not computed again.
    """
    uri = job.spec.output
    if shard_done(uri, shard.name):
        entry = read_shard_entry(uri, shard.name)
        return ShardResult(entry, errors=entry["errors"], resumed=True)
    futures = [client.submit(process_file, f, job.spec.domain, job.spec.ops, reuse, job.labels,
                             pure=False, key=f"compute-{shard.name}-{i}")
               for i, (f, reuse) in enumerate(zip(shard.files, shard.reuse))]
    for fut in as_completed(futures):
        if progress:
            progress(len(fut.result().errors))  # one call per finished file: its failed samples
    return client.submit(write_shard_results, uri, shard.name, futures, job.spec.row_group_size, pure=False,
                         key=f"write-{shard.name}").result()


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


def commit(job: Job, results: Sequence[ShardResult], seconds_total: float) -> dict[str, Any]:
    """Publish the new version: kept shards + new shards, errors, lineage and run statistics."""
    spec, plan = job.spec, job.plan
    # Reused shards: their full entries (columns, stats, errors) live in their sidecars.
    kept = [read_shard_entry(spec.output, entry["name"]) for entry in plan.kept]
    seconds: dict[str, float] = {}
    computed: dict[str, int] = {}
    reused: dict[str, int] = {}
    for res in results:
        _add(seconds, res.seconds)
        _add(computed, res.computed)
        _add(reused, res.reused)
    kept_samples = sum(e["rows"] for e in plan.kept)
    extra = {
        "name": spec.name, "domain": spec.domain, "source": spec.source,
        "ops": [step.describe() for step in spec.ops],
        "recipes": plan.recipes,
        "layout": {"row_group_size": spec.row_group_size},
        "labels": job.labels.describe() if job.labels else None,
        "software": software_versions(),
        "run": {"files": plan.file_count, "skipped_files": len(plan.skipped),
                "previous_version": plan.previous_version,
                "shards_reused": len(plan.kept), "shards_resumed": sum(r.resumed for r in results),
                "shards_computed": sum(not r.resumed for r in results),
                "samples_reused_whole": kept_samples, "op_samples_computed": computed,
                "op_samples_reused": reused,
                "seconds_by_stage": {k: round(v, 4) for k, v in seconds.items()},
                "wall_seconds": round(seconds_total, 3)},
    }
    # Row order: shards by their first raw file, so reused and new shards interleave as listed.
    shards = sorted(kept + [r.entry for r in results], key=lambda e: e["first_file"] or "")
    manifest = commit_version(spec.output, shards, [e for s in shards for e in s["errors"]], extra)
    prune_versions(spec.output, spec.keep_versions)
    return manifest


def run_pipeline(spec: PipelineSpec, client: Client | None = None, retry_errors: bool = False,
                 wait: float = 0.0, progress: bool = True) -> dict[str, Any]:
    """Run a spec end to end without Prefect (holding the dataset's lock); returns the manifest."""
    if client is None:
        with dask_client(spec.dask_address) as own:
            return run_pipeline(spec, own, retry_errors, wait, progress)
    start = time.perf_counter()
    with DatasetLock(spec.output, wait=wait):
        job = prepare(spec, retry_errors)
        reporter = ProgressReporter(sum(len(s.files) for s in job.plan.todo), label=spec.name,
                                    log=None if progress else (lambda _msg: None),
                                    tty=None if progress else False)
        # Shards run concurrently (threads only wait on Dask); results stay in plan order.
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda shard: run_shard(client, job, shard, reporter.item_done),
                                    job.plan.todo))
        reporter.close()
        return commit(job, results, time.perf_counter() - start)
