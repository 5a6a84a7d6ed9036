"""Issue 4 benchmark: what a re-run costs, and planning over a million samples.

    python -m bench.cache [--meshes 200] [--index-samples 1000000]

Part 1, on N perturbed icosphere meshes (642 vertices) with the full op set, one LocalCluster
(2 worker processes) for every run: the first run, then re-runs with nothing changed, with one
file in 100 edited, and with one op parameter changed. Baseline: the first run (time to
recompute everything, which is what a per-paper preprocess.py does on any change).
Part 2, in a fresh process: planning a re-run against a synthetic committed index of 10^6
unchanged records of one raw file (3,907 shards of 256), time and peak memory; neither array
data nor the raw file exists at all. Planned from the shard sidecars, then from the version's
items index written from them (storage/items_index.py).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

OPS = {"eigenbasis": {"k": 32}, "frames": {}, "geodesics": {"sources": 4}, "neighborhoods": {}, "gradients": {}}


def _write_mesh(path: str, seed: int) -> None:
    import trimesh
    mesh = trimesh.creation.icosphere(subdivisions=3)
    rng = np.random.default_rng(seed)
    mesh.vertices = mesh.vertices * (1 + 0.2 * rng.random((len(mesh.vertices), 1)))
    mesh.export(path)


def rerun_costs(n_meshes: int, workdir: str) -> dict:
    from pipelines.cluster import dask_client
    from pipelines.execute import run_pipeline
    from pipelines.spec import parse_spec

    raw = os.path.join(workdir, "raw")
    os.makedirs(raw)
    for i in range(n_meshes):
        _write_mesh(os.path.join(raw, f"m{i:04d}.ply"), i)

    def spec(ops=OPS):
        return parse_spec({"name": "bench", "domain": "mesh", "source": raw, "output": os.path.join(workdir, "ds"),
                           "ops": ops, "shard_size": 16})

    def timed(s):
        t0 = time.perf_counter()
        manifest = run_pipeline(s, client, progress=False)
        return time.perf_counter() - t0, manifest["run"]

    out = {}
    with dask_client(n_workers=2) as client:
        first, run = timed(spec())
        out["first_run_s"] = first
        out["first_run_op_seconds"] = run["seconds_by_stage"]
        out["nothing_changed_s"] = statistics.median(timed(spec())[0] for _ in range(3))
        edits = []
        for rep in range(3):
            for j in range(max(1, n_meshes // 100)):
                _write_mesh(os.path.join(raw, f"m{(37 * rep + 11 * j) % n_meshes:04d}.ply"), 10_000 + 100 * rep + j)
            seconds, run = timed(spec())
            edits.append(seconds)
        out["one_in_100_edited_s"] = statistics.median(edits)
        out["one_in_100_computed"] = run["op_samples_computed"]
        params = []
        # New values each time: a value seen before would find its shards still on disk.
        for sources in (5, 6, 7):
            seconds, run = timed(spec({**OPS, "geodesics": {"sources": sources}}))
            params.append(seconds)
        out["changed_param_s"] = statistics.median(params)
        out["changed_param_computed"] = run["op_samples_computed"]
        out["changed_param_reused"] = run["op_samples_reused"]
    return out


def _synthetic_index(root: str, samples: int, per_shard: int = 256) -> tuple[list, object]:
    """A committed dataset whose shards hold `samples` unchanged records of ONE raw file (the
    shape of a 10^6-molecule SDF), sidecars only: planning must not read that file."""
    import pyarrow as pa
    from pipelines.cache import FileState, recipe_keys
    from pipelines.spec import parse_spec
    from storage.manifest import FORMAT, publish_manifest
    from storage.writer import FILES_SCHEMA, table_to_parquet_bytes

    spec = parse_spec({"name": "big", "domain": "molecule", "source": root, "output": root,
                       "ops": {"neighborhoods": {"radius": 5.0}, "eigenbasis": {"k": 8}}, "shard_size": per_shard})
    os.makedirs(os.path.join(root, "shards"), exist_ok=True)
    shards, big = [], "/data/raw/big.sdf"
    for start in range(0, samples, per_shard):
        name = f"s{start:09d}"
        records = np.arange(start, min(start + per_shard, samples))
        n = len(records)
        table = pa.table({"shard": [name] * n, "file": [big] * n, "file_key": ["f" * 32] * n,
                          "size": [1000 * samples] * n, "mtime_ns": [1] * n, "record": records,
                          "start": records * 1000, "stop": records * 1000 + 999,
                          "key": [f"{i:032x}" for i in records], "samples": [1] * n,
                          "errors": ["[]"] * n}, schema=FILES_SCHEMA)
        entry = {"path": f"shards/{name}.parquet", "rows": n, "bytes": 0, "files": n, "first_file": big,
                 "first_record": int(start), "columns": {}, "stats": {}, "geometry": [], "errors": []}
        table = table.replace_schema_metadata({b"gdl.shard": json.dumps(entry).encode()})   # as write_shard
        with open(os.path.join(root, "shards", f"{name}.files.parquet"), "wb") as fh:
            fh.write(table_to_parquet_bytes(table))
        shards.append({"name": name, **entry})
    states = [FileState(big, 1000 * samples, 1)]
    publish_manifest(root, {"format": FORMAT, "version": 1, "sample_count": samples, "error_count": 0,
                            "columns": {}, "shards": shards, "errors": None, "recipes": recipe_keys(spec),
                            "layout": spec.layout()})
    return states, spec


def _plan_times(spec, states, repeats: int = 3) -> list[float]:
    from pipelines.cache import plan_run
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = plan_run(spec, states)
        times.append(time.perf_counter() - t0)
        assert not plan.todo and plan.reused_items == states[0].size // 1000
    return times


def _add_items_index(root: str) -> float:
    """Write the version's items index (storage/items_index.py) from its sidecars, as a commit
    would, and name it in the manifest; returns its size in MB."""
    from pipelines.cache import previous_items
    from storage.items_index import write_items_index
    from storage.manifest import load_manifest, publish_manifest
    manifest, rows = previous_items(root)
    path = write_items_index(root, manifest["version"], rows, manifest["shards"])
    published = load_manifest(root)
    publish_manifest(root, {**published, "items_index": path})
    return os.path.getsize(os.path.join(root, path)) / 1e6


def plan_big(samples: int) -> dict:
    """Run in a fresh process: build the synthetic index, then time planning and its peak RSS,
    reading the shard sidecars, then the version's items index."""
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        states, spec = _synthetic_index(root, samples)
        build = time.perf_counter() - t0
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = _plan_times(spec, states)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        index_mb = _add_items_index(root)
        indexed = _plan_times(spec, states)
    return {"samples": samples, "index_build_s": build, "plan_median_s": statistics.median(times),
            "plan_runs_s": times, "peak_rss_mb": peak / 1024, "rss_growth_while_planning_mb": (peak - rss_before) / 1024,
            "items_index_mb": index_mb, "indexed_plan_median_s": statistics.median(indexed),
            "indexed_plan_runs_s": indexed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meshes", type=int, default=200)
    parser.add_argument("--index-samples", type=int, default=1_000_000)
    parser.add_argument("--plan-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plan_only:
        print(json.dumps(plan_big(args.index_samples)))
        return
    with tempfile.TemporaryDirectory() as workdir:
        costs = rerun_costs(args.meshes, workdir)
    first = costs["first_run_s"]
    print(f"\nRe-run costs on {args.meshes} meshes (642 vertices; ops: {', '.join(OPS)}), 2 Dask workers")
    print(f"{'run':32s} {'seconds':>9s} {'vs first run':>13s}")
    print(f"{'first run (baseline)':32s} {first:9.2f} {1.0:13.3f}")
    for key, label in (("nothing_changed_s", "re-run, nothing changed"),
                       ("one_in_100_edited_s", "re-run, 1 file in 100 edited"),
                       ("changed_param_s", "re-run, geodesics.sources changed")):
        print(f"{label:32s} {costs[key]:9.2f} {costs[key] / first:13.3f}")
    geo = costs["first_run_op_seconds"].get("geodesics", 0.0) / 2  # summed over 2 workers
    print(f"geodesics alone in the first run (per worker): {geo:.2f} s -> param re-run / that = "
          f"{costs['changed_param_s'] / geo if geo else float('nan'):.2f}")
    print(f"edited re-run computed {costs['one_in_100_computed']}")
    print(f"param re-run computed {costs['changed_param_computed']}, reused {costs['changed_param_reused']}")
    proc = subprocess.run([sys.executable, "-m", "bench.cache", "--plan-only", "--index-samples",
                           str(args.index_samples)], capture_output=True, text=True, check=True)
    big = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nPlanning a re-run over {big['samples']:,} unchanged samples (synthetic index, no array data): "
          f"median {big['plan_median_s']:.2f} s of {[round(t, 2) for t in big['plan_runs_s']]}, "
          f"peak RSS {big['peak_rss_mb']:.0f} MB (+{big['rss_growth_while_planning_mb']:.0f} MB while planning)")
    print(f"the same from the version's items index ({big['items_index_mb']:.0f} MB): median "
          f"{big['indexed_plan_median_s']:.2f} s of {[round(t, 2) for t in big['indexed_plan_runs_s']]}")


if __name__ == "__main__":
    main()
