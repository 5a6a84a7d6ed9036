"""Eigenbasis and geodesics (issue 3): gdl-data's ops against the recipes users run today.

    python -m bench.eigenbasis [--full] [--repeats 3] [--threads 1] [--write]

Eigenbasis, k = 128, unit icospheres (trimesh) of subdivision 5 and 6 (10,242 / 40,962
vertices; --full adds 7: 163,842), each measurement in a fresh process (peak RSS is per process,
and C allocations are invisible to tracemalloc), the implementations interleaved per repeat:

* recipe: DiffusionNet's — robust_laplacian.mesh_laplacian + scipy eigsh(L, k, M, sigma=−0.01)
  (ARPACK shift-invert on a SuperLU factor), to machine precision;
* ours: gdl_data.ops.eigenbasis.mesh_eigenbasis (block Lanczos on a Cholesky factor, tol 1e-6),
  including its mass normalisation and sign fixing;
* ours-arpack: the same with solver="arpack" (ARPACK on our Cholesky factor, machine precision):
  what the factorisation alone buys.

Accuracy is the max relative error of λ1..λ127 against the sphere's l(l+1) (the mesh's own
discretisation error dominates), and the largest difference between ours and the recipe.
Geodesics: potpourri3d's heat method called directly against mesh_distance_from (the same
solver behind unit scaling and component masking): prefactor time, median per source.
Medians of --repeats; ratios are ours / recipe. Each eigenbasis process gets --threads BLAS
threads (default 1: on a shared machine, spinning BLAS threads make wall and CPU times of both
sides meaningless; CPU time is then the steadier figure). --write puts the tables into
bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 128
SUBDIVISIONS, FULL = (5, 6), (5, 6, 7)
IMPLEMENTATIONS = ("recipe", "ours", "ours-arpack")
SECTION = "## Eigenbasis and geodesics (issue 3)"
RESULTS = Path(__file__).with_name("RESULTS.md")


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def sphere_spectrum(count: int) -> np.ndarray:
    return np.array([l * (l + 1) for l in range(count) for _ in range(2 * l + 1)][:count], float)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux: KiB


def measure_eigenbasis(implementation: str, subdivisions: int, evals_path: str) -> dict:
    """One timed eigenbasis in this (fresh) process; the eigenvalues go to evals_path."""
    import robust_laplacian
    import scipy.sparse.linalg as sla

    from gdl_data.ops.eigenbasis import mesh_eigenbasis      # imports outside the timed region

    pos, faces = icosphere(subdivisions)
    before_mb = _peak_mb()
    wall, cpu = time.perf_counter(), _cpu_seconds()
    if implementation == "recipe":
        L, M = robust_laplacian.mesh_laplacian(pos, faces)
        evals = sla.eigsh(L, K, M, sigma=-0.01)[0]
    else:
        solver = "arpack" if implementation == "ours-arpack" else "block_lanczos"
        evals = mesh_eigenbasis(pos, faces, K, solver=solver)["evals"]
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    evals = np.sort(evals)
    np.save(evals_path, evals)
    exact = sphere_spectrum(K)
    return {"wall": wall, "cpu": cpu, "peak_mb": _peak_mb(), "own_mb": _peak_mb() - before_mb,
            "rel_err": float(np.max(np.abs(evals[1:] - exact[1:]) / exact[1:]))}


def run_child(implementation: str, subdivisions: int, evals_path: str, threads: int) -> dict:
    env = {**os.environ, **{name: str(threads) for name in
                            ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    out = subprocess.run([sys.executable, "-m", "bench.eigenbasis", "--child", implementation,
                          str(subdivisions), evals_path], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_eigenbasis(subdivisions: tuple[int, ...], repeats: int, threads: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sub in subdivisions:
            runs = {name: [] for name in IMPLEMENTATIONS}
            for _ in range(repeats):
                for name in IMPLEMENTATIONS:              # interleaved: load drifts hit all alike
                    runs[name].append(run_child(name, sub, f"{tmp}/{name}-{sub}.npy", threads))
            evals = {name: np.load(f"{tmp}/{name}-{sub}.npy") for name in IMPLEMENTATIONS}
            row = {"sub": sub, "n": 10 * 4 ** sub + 2}
            for name, measured in runs.items():
                row[name] = {key: statistics.median(m[key] for m in measured)
                             for key in measured[0]}
                row[name]["vs_recipe"] = float(np.max(np.abs(evals[name] - evals["recipe"]))
                                               / evals["recipe"][-1])
            rows.append(row)
            print(format_eigen_row(row), flush=True)
    return rows


def bench_geodesics(subdivisions: tuple[int, ...], repeats: int, sources: int = 8) -> list[dict]:
    import potpourri3d

    from gdl_data.ops.distances import mesh_distance_from

    rows = []
    for sub in subdivisions:
        pos, faces = icosphere(sub)
        ids = np.linspace(0, len(pos) - 1, sources).astype(int)
        great_circle = np.arccos(np.clip(pos[ids] @ pos.T, -1.0, 1.0))
        timing = {"direct": ([], []), "ours": ([], [])}       # prefactor, per-source seconds
        distances = {}
        for _ in range(repeats):
            for name in timing:
                start = time.perf_counter()
                if name == "direct":
                    solver = potpourri3d.MeshHeatMethodDistanceSolver(pos, faces)
                    distance_from = solver.compute_distance
                else:
                    distance_from = mesh_distance_from(pos, faces)[0]
                timing[name][0].append(time.perf_counter() - start)
                rows_out = []
                for i in ids:
                    start = time.perf_counter()
                    rows_out.append(distance_from(i))
                    timing[name][1].append(time.perf_counter() - start)
                distances[name] = np.array(rows_out)
        row = {"sub": sub, "n": len(pos),
               "max_diff": float(np.abs(distances["ours"] - distances["direct"]).max()),
               "err_vs_great_circle": float(np.abs(distances["ours"] - great_circle).max())}
        for name, (prefactor, per_source) in timing.items():
            row[name] = {"prefactor": statistics.median(prefactor),
                         "per_source": statistics.median(per_source)}
        rows.append(row)
        print(format_geo_row(row), flush=True)
    return rows


def format_eigen_row(row: dict) -> str:
    recipe, ours, arpack = (row[name] for name in IMPLEMENTATIONS)
    return (f"| {row['sub']} | {row['n']:,} | {recipe['wall']:.2f} / {recipe['cpu']:.2f} "
            f"| {ours['wall']:.2f} / {ours['cpu']:.2f} "
            f"| {arpack['wall']:.2f} / {arpack['cpu']:.2f} "
            f"| {ours['wall'] / recipe['wall']:.2f} / {ours['cpu'] / recipe['cpu']:.2f} "
            f"| {recipe['rel_err']:.3e} / {ours['rel_err']:.3e} | {ours['vs_recipe']:.1e} "
            f"| {recipe['own_mb']:.0f} / {ours['own_mb']:.0f} / {arpack['own_mb']:.0f} |")


def format_geo_row(row: dict) -> str:
    direct, ours = row["direct"], row["ours"]
    return (f"| {row['sub']} | {row['n']:,} | {direct['prefactor']:.3f} / {ours['prefactor']:.3f} "
            f"| {1e3 * direct['per_source']:.1f} / {1e3 * ours['per_source']:.1f} "
            f"| {ours['per_source'] / direct['per_source']:.2f} | {row['max_diff']:.1e} "
            f"| {row['err_vs_great_circle']:.3f} |")


EIGEN_HEADER = ("| sub | n | recipe wall / cpu s | ours wall / cpu s | ours-arpack wall / cpu s "
                "| ours / recipe (wall / cpu) | max rel err vs l(l+1) recipe / ours "
                "| ours − recipe (rel) | own peak MB recipe / ours / ours-arpack |\n"
                "|---|---|---|---|---|---|---|---|---|")
GEO_HEADER = ("| sub | n | prefactor s direct / ours | per source ms direct / ours | ratio "
              "| max diff | max err vs great circle |\n|---|---|---|---|---|---|---|")


def growth(rows: list[dict], name: str) -> str:
    """Exponent p of time ∝ n^p between consecutive sizes (wall medians)."""
    return ", ".join(f"{np.log(b[name]['wall'] / a[name]['wall']) / np.log(b['n'] / a['n']):.2f}"
                     for a, b in zip(rows, rows[1:]))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def report(eigen: list[dict], geo: list[dict], repeats: int, threads: int, load: tuple) -> str:
    return "\n".join([
        SECTION, "",
        f"`python -m bench.eigenbasis` — {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
        f"{machine()}; load average {load[0]:.1f} at start, {load[1]:.1f} at end (shared machine); "
        f"medians of {repeats}; {threads} BLAS thread(s) per eigenbasis process.", "",
        f"Eigenbasis, k = {K}, unit icosphere. Times include building the Laplacian.", "",
        EIGEN_HEADER, *map(format_eigen_row, eigen), "",
        f"Growth of wall time with n (exponent between consecutive sizes): recipe "
        f"{growth(eigen, 'recipe')}; ours {growth(eigen, 'ours')}.", "",
        "Heat-method geodesics, 8 sources: potpourri3d called directly vs mesh_distance_from.", "",
        GEO_HEADER, *map(format_geo_row, geo), ""])


def write_section(text: str) -> None:
    """Replace (or append) this benchmark's section of bench/RESULTS.md, leaving others alone."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text.rstrip("\n") + ("\n\n" + old[end + 1:] if end >= 0 else "")
    RESULTS.write_text(new.rstrip("\n") + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="add subdivision 7 (163,842 vertices)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per eigenbasis run")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        implementation, sub, path = args.child
        print(json.dumps(measure_eigenbasis(implementation, int(sub), path)))
        return
    subdivisions = FULL if args.full else SUBDIVISIONS
    load_start = os.getloadavg()[0]
    print(EIGEN_HEADER, flush=True)
    eigen = bench_eigenbasis(subdivisions, args.repeats, args.threads)
    print("\n" + GEO_HEADER, flush=True)
    geo = bench_geodesics(subdivisions, args.repeats)
    text = report(eigen, geo, args.repeats, args.threads, (load_start, os.getloadavg()[0]))
    print("\n" + text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
