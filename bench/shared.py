"""Issue 11 benchmark: many HEALPix maps on one grid, the grid's geometry stored once.

    python -m bench.shared [--maps 40 1000] [--baseline-maps 40] [--nside 64] [--workers 2]

Data: maps drawn by `healpy.synfast` from a power-law spectrum, written as float32 FITS.
Ops: `eigenbasis: {k: 16}`, `frames: {}`, `neighborhoods: {}`. For each count of maps:
wall time of `run_pipeline` on a fresh LocalCluster, bytes on disk (every file of the dataset
folder), and the reference the issue sets: the maps' values as float32 plus one copy of the
grid's geometry, i.e. the nbytes of every array of one sample that is not its map (computed
from the decoded arrays, not from our files). Baseline in the same run: the same maps with
`share_geometry: false` (a copy of the geometry per sample, the layout before issue 11) at
`--baseline-maps`. Then a full read of the shared dataset (open_dataset iteration, the grid
joined from its one decoded copy), and every value compared with the FITS maps.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

OPS = {"eigenbasis": {"k": 16}, "frames": {}, "neighborhoods": {}}
META = ("sample_id", "source", "domain", "geometry_key", "values")


def write_maps(folder: str, count: int, nside: int) -> list[str]:
    """`count` float32 FITS maps from a power-law spectrum (numpy's global seed fixed)."""
    import healpy as hp
    os.makedirs(folder, exist_ok=True)
    np.random.seed(0)
    cl = 1.0 / (1.0 + np.arange(3 * nside)) ** 2
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"map{i:05d}.fits")
        hp.write_map(path, hp.synfast(cl, nside).astype(np.float32), dtype=np.float32, overwrite=True)
        paths.append(path)
    return paths


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def run(source: str, output: str, share: bool, workers: int) -> tuple[float, dict]:
    from pipelines.execute import run_pipeline
    from pipelines.spec import parse_spec
    spec = parse_spec({"name": "maps", "domain": "sphere", "source": source, "output": output, "ops": OPS,
                       "share_geometry": share, "workers": workers})
    start = time.perf_counter()
    manifest = run_pipeline(spec, progress=False)
    return time.perf_counter() - start, manifest


def reference_bytes(output: str, count: int) -> int:
    """count maps' values as float32 + one sample's other arrays (the grid's geometry), once."""
    from gdl_data import open_dataset
    row = open_dataset(output)[0]
    geometry = sum(v.nbytes for k, v in row.items() if k not in META and isinstance(v, np.ndarray))
    return count * row["values"].astype(np.float32).nbytes + geometry


def check_values(output: str, paths: list[str]) -> tuple[float, bool]:
    """(seconds to iterate the whole dataset, every map equal to its FITS file)."""
    import healpy as hp
    from gdl_data import open_dataset
    start = time.perf_counter()
    rows = {r["source"]: r["values"][:, 0] for r in open_dataset(output)}
    seconds = time.perf_counter() - start
    return seconds, all(np.array_equal(rows[p], hp.read_map(p, dtype=np.float32)) for p in paths)


def measure(workdir: str, count: int, nside: int, share: bool, workers: int) -> dict:
    source = os.path.join(workdir, f"maps{count}")
    paths = sorted(os.path.join(source, f) for f in os.listdir(source))[:count] if os.path.isdir(source) \
        else write_maps(source, count, nside)
    output = os.path.join(workdir, f"ds{count}-{'shared' if share else 'copies'}")
    shutil.rmtree(output, ignore_errors=True)
    seconds, manifest = run(source, output, share, workers)
    out = {"maps": count, "shared": share, "seconds": seconds, "bytes": folder_bytes(output),
           "reference": reference_bytes(output, count), "computed": manifest["run"]["op_samples_computed"]}
    if share:
        out["read_seconds"], out["values_equal"] = check_values(output, paths)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, nargs="+", default=[40, 1000])
    parser.add_argument("--baseline-maps", type=int, default=40)
    parser.add_argument("--nside", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}; nside {args.nside}; ops {OPS}")
    workdir = tempfile.mkdtemp(prefix="gdl-bench-shared-")
    try:
        results = [measure(workdir, n, args.nside, True, args.workers) for n in args.maps]
        if args.baseline_maps:
            results.append(measure(workdir, args.baseline_maps, args.nside, False, args.workers))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'maps':>6} {'layout':>10} {'wall s':>8} {'MB on disk':>11} {'reference MB':>13} {'ratio':>6} "
          f"{'read s':>7} equal  op computations")
    for r in results:
        print(f"{r['maps']:>6} {'shared' if r['shared'] else 'per-sample':>10} {r['seconds']:>8.1f} "
              f"{r['bytes'] / 1e6:>11.1f} {r['reference'] / 1e6:>13.1f} {r['bytes'] / r['reference']:>6.2f} "
              f"{r.get('read_seconds', float('nan')):>7.2f} {str(r.get('values_equal', '-')):>5}  {r['computed']}")
    same = [r for r in results if r["maps"] == args.baseline_maps]
    if len(same) == 2:
        print(f"per-sample / shared bytes at {args.baseline_maps} maps: {same[1]['bytes'] / same[0]['bytes']:.1f}x; "
              f"wall time {same[1]['seconds'] / same[0]['seconds']:.1f}x")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
