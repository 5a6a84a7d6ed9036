"""Large single samples (issue 10, item 4): time and peak memory of the ops, called directly.

    python -m bench.scale_samples [--quick] [--cases sphere-512,mesh-2.6M] [--threads 1]

Each case runs in a fresh process (`--case NAME`, JSON on the last line), so peak RSS
(ru_maxrss, C allocations included) is that case's own; cases run one after another, never two
at once. The ops run as the pipeline runs them: in spec order, each op seeing the reader's
columns plus the outputs of the ops it depends on, every output cast to storage dtypes
(float32 / int64) and kept until the end of the sample. Times exclude making the sample; CPU
seconds are given beside wall seconds, as on a shared machine they are the steadier figure;
"whole case" is the child process's wall time: start-up, imports, making the sample, the ops.

  sphere-N     a full-sky HEALPix map (healpy pixel centres, one channel of noise) at nside N,
               the default sphere ops: eigenbasis {k: 16}, frames {}, neighborhoods {}
  sphere-256-lanczos   the same at nside 256 with eigenbasis {solver: block_lanczos}: the method
               used before (shift-invert on a Cholesky factor), the baseline of the ratio column
  mesh-S       trimesh's icosphere of subdivision S (8: 655,362 vertices, 9: 2,621,442),
               eigenbasis {k: 64}, geodesics {sources: 4}; `-lobpcg`: eigenbasis with
               {solver: lobpcg}, the memory-lean solver (module constant MESH_LOBPCG_OPS)
  graph-1M     10⁶ uniform points in the unit cube, each joined to its 10 nearest (10⁷ edges,
               a 3-D geometric graph: the Cholesky factor of such a graph fills in),
               eigenbasis {k: 16}

--quick runs small versions of each kind (nside 64/128, subdivision 5, 10⁵ nodes) in a minute.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

SPHERE_OPS = [("eigenbasis", {"k": 16}), ("frames", {}), ("neighborhoods", {})]
MESH_OPS = [("eigenbasis", {"k": 64}), ("geodesics", {"sources": 4})]
# The same with LOBPCG: block Lanczos keeps ≈ 8k + 128 vectors of n (20 GiB estimated at 2.6 M
# vertices, k = 64), LOBPCG a few blocks (9.3 GiB): what a user writes when the first is over budget.
MESH_LOBPCG_OPS = [("eigenbasis", {"k": 64, "solver": "lobpcg"}), ("geodesics", {"sources": 4})]
GRAPH_OPS = [("eigenbasis", {"k": 16})]

CASES = {   # name: (kind, size, ops)
    "sphere-256-lanczos": ("sphere", 256, [("eigenbasis", {"k": 16, "solver": "block_lanczos"}),
                                           ("frames", {}), ("neighborhoods", {})]),
    "sphere-256": ("sphere", 256, SPHERE_OPS),
    "sphere-512": ("sphere", 512, SPHERE_OPS),
    "sphere-1024": ("sphere", 1024, SPHERE_OPS),
    "mesh-655k": ("mesh", 8, MESH_OPS),
    "mesh-2.6M": ("mesh", 9, MESH_OPS),
    "mesh-2.6M-lobpcg": ("mesh", 9, MESH_LOBPCG_OPS),
    "graph-1M": ("graph", 1_000_000, GRAPH_OPS),
}
QUICK = {
    "sphere-64-lanczos": ("sphere", 64, CASES["sphere-256-lanczos"][2]),
    "sphere-64": ("sphere", 64, SPHERE_OPS),
    "sphere-128": ("sphere", 128, SPHERE_OPS),
    "mesh-10k": ("mesh", 5, MESH_OPS),
    "mesh-10k-lobpcg": ("mesh", 5, MESH_LOBPCG_OPS),
    "graph-100k": ("graph", 100_000, GRAPH_OPS),
}
BASELINE = {"sphere-256": "sphere-256-lanczos", "sphere-64": "sphere-64-lanczos"}


def make_sample(kind: str, size: int) -> dict:
    """The reader-shaped record of one case (see the module docstring)."""
    if kind == "sphere":
        from gdl_data.readers.sphere import sphere_map

        values = np.random.default_rng(0).standard_normal(12 * size * size)
        return dict(sphere_map(values, f"noise-{size}.npy", "bench").record())
    if kind == "mesh":
        import trimesh

        mesh = trimesh.creation.icosphere(subdivisions=size)
        return {"domain": "mesh", "source": f"icosphere-{size}", "pos": np.asarray(mesh.vertices),
                "faces": np.asarray(mesh.faces, dtype=np.int64)}
    from scipy.spatial import cKDTree

    points = np.random.default_rng(0).random((size, 3))
    _, neighbours = cKDTree(points).query(points, k=11)
    edge_index = np.stack([np.repeat(np.arange(size), 10), neighbours[:, 1:].ravel()])
    return {"domain": "graph", "source": f"knn-{size}", "num_nodes": size,
            "edge_index": edge_index.astype(np.int64)}


def run_case(name: str, kind: str, size: int, ops: list) -> dict:
    """Child process: make the sample, run the ops as the pipeline does, report."""
    from gdl_data.ops import get_op
    from pipelines.compute import storage_dtypes

    rss_imports = _peak_mb()
    start = time.perf_counter()
    raw = make_sample(kind, size)
    made = time.perf_counter() - start
    n = len(raw.get("pos", ())) or int(raw.get("num_nodes", 0))
    outputs, seconds, estimates = {}, {}, {}
    cpu = time.process_time()
    for op_name, params in ops:
        op = get_op(op_name)
        sample = dict(raw)
        for dep in op.depends_on:
            sample.update(outputs.get(dep, {}))
        parsed = op.parse_params(params, kind)
        estimate = getattr(op, "estimate_bytes", None)
        estimates[op_name] = estimate(sample, parsed) / 2**20 if estimate else None
        begin = time.perf_counter()
        outputs[op_name] = storage_dtypes(op.run(sample, parsed))
        seconds[op_name] = time.perf_counter() - begin
        del sample
    return {"case": name, "n": n, "make_s": made, "op_s": seconds,
            "total_s": sum(seconds.values()), "cpu_s": time.process_time() - cpu,
            "estimate_mb": estimates,
            "rss_imports_mb": rss_imports, "peak_mb": _peak_mb()}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small versions, about a minute")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per case")
    parser.add_argument("--case", help=argparse.SUPPRESS)      # the child process
    args = parser.parse_args()
    table = QUICK if args.quick else CASES
    if args.case:
        kind, size, ops = {**CASES, **QUICK}[args.case]
        print(json.dumps(run_case(args.case, kind, size, ops)))
        return 0
    names = args.cases.split(",") if args.cases else list(table)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f} at start; {args.threads} BLAS thread(s)", flush=True)
    print("| case | n | ops s (CPU s) | whole case s | per op s | peak RSS MiB | RSS after imports MiB | "
          "estimate MiB | against the baseline |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    results = {}
    for name in names:
        results[name] = _run_child(name, args.threads)
        _print_row(results[name], results.get(BASELINE.get(name, "")))
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    return 0 if all("error" not in r for r in results.values()) else 1


def _run_child(name: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    begin = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.scale_samples", "--case", name],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"case": name, "error": f"exit {proc.returncode}: {tail}",
                "wall_s": time.perf_counter() - begin}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]),
            "wall_s": time.perf_counter() - begin}


def _print_row(result: dict, baseline: dict | None) -> None:
    if "error" in result:
        print(f"| {result['case']} | failed after {result['wall_s']:.0f} s: {result['error']} |",
              flush=True)
        return
    ops = ", ".join(f"{k} {v:.1f}" for k, v in result["op_s"].items())
    estimates = ", ".join(f"{k} {v:.0f}" for k, v in result["estimate_mb"].items() if v is not None)
    ratio = (f"{result['total_s'] / baseline['total_s']:.2f}× time, "
             f"{result['peak_mb'] / baseline['peak_mb']:.2f}× memory of {baseline['case']}"
             if baseline and "error" not in baseline else "")
    print(f"| {result['case']} | {result['n']:,} | {result['total_s']:.1f} "
          f"({result['cpu_s']:.0f} CPU) | {result['wall_s']:.1f} | {ops} | "
          f"{result['peak_mb']:.0f} | {result['rss_imports_mb']:.0f} | {estimates} | {ratio} |",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
