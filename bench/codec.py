"""Issue 11 benchmark: bytes per sample and read speed of each shard codec, on all four domains.

    python -m bench.codec [--reps 5] [--codecs none,snappy,lz4,zstd,zstd-3,zstd-9] [--workdir ...]

Data: the demo's raw files (pipelines/demo_data.py) plus larger generated ones (30 icospheres of
2,562 vertices; RDKit's 436 3D ligands with hydrogens; 12 random geometric graphs of 2,000
nodes; 6 HEALPix maps at nside 64), computed once in this process with the demo specs' ops
(pipelines/compute.process_file, no Dask) and kept under --workdir as the *before* layout
(uncompressed, int64 as int64); and, as a fifth row, bench.loader's random 1 MB meshes (what a
codec does to data it cannot compress). Each configuration (codec x narrowing of int64 arrays) rewrites
the same rows with storage.write_shard into its own dataset; a configuration's rows must read
back equal (dtype, shape, bytes) to the computed ones, or the benchmark fails.

Read times, page cache warm, medians over --reps interleaved passes, each over every sample, as
this process's CPU time (what the layout costs, little moved by other processes on a shared
machine) and wall time:
* reader: `list(StoredDataset(uri))` (whole shards read, then decoded to numpy);
* loader: one epoch of `GeometryStream(uri, shuffle=False)` (row groups, decoded to tensors).
Also: why no byte-stream-split (pyarrow refuses it for binary columns; the same shuffle done by
hand before compressing is measured on each domain's float bytes).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.writer import COMPRESS_BELOW, COMPRESSION, NARROW

DOMAINS = ("mesh", "molecule", "graph", "sphere", "random-mesh")
OPS = {   # the demo specs' ops (pipelines/demo_specs/*.yaml)
    "mesh": {"eigenbasis": {"k": 32}, "frames": {}, "geodesics": {"sources": 4}, "neighborhoods": {},
             "gradients": {}},
    "molecule": {"eigenbasis": {"k": 8}, "geodesics": {"sources": 2}, "neighborhoods": {"radius": 5.0}},
    "graph": {"eigenbasis": {"k": 8}, "geodesics": {"sources": 4}},
    "sphere": {"eigenbasis": {"k": 16}, "frames": {}, "neighborhoods": {}},
}
SHARD_ROWS = 128
MESHES, GRAPHS, MAPS = 30, 12, 6   # generated raw files besides the demo's
RANDOM_MESHES = 128                 # bench.loader's samples, ~1 MB each


def write_raw(root: Path) -> dict[str, Path]:
    """The demo's raw files and the larger generated ones, one folder per domain (idempotent)."""
    import healpy
    import networkx as nx
    import trimesh

    from pipelines.demo_data import materialise_demo_data, power_law_map, write_once
    from pipelines.train_data import _write_logp_molecules

    folders = {d: Path(p) for d, p in materialise_demo_data(str(root)).items()}
    for i in range(MESHES):
        def mesh(target: str, i=i) -> None:
            m = trimesh.creation.icosphere(subdivisions=4)
            m.vertices *= 1 + 0.2 * np.random.default_rng(i).random((len(m.vertices), 1))
            m.export(target)
        write_once(str(folders["mesh"] / f"icosphere4_{i}.ply"), mesh)
    _write_logp_molecules(str(folders["molecule"]))
    for i in range(GRAPHS):
        def graph(target: str, i=i) -> None:
            g = nx.random_geometric_graph(2000, 0.04, seed=i)
            with open(target, "w") as fh:
                fh.write("src,dst\n")
                fh.writelines(f"{u},{v}\n" for u, v in g.edges())
        write_once(str(folders["graph"] / f"geometric2000_{i}.csv"), graph)
    for i, alpha in enumerate(np.linspace(1.0, 3.0, MAPS)):
        write_once(str(folders["sphere"] / f"nside64_{i}.fits"),
                   lambda t, a=alpha, s=10 + i: healpy.write_map(t, power_law_map(a, s, nside=64)))
    return folders


def computed_rows(folder: Path, domain: str, out: Path) -> list[dict]:
    """Every sample of `folder` with the domain's ops, stored once under `out` (the *before*
    layout) and read from there on later runs."""
    from pipelines.cache import FileState
    from pipelines.compute import process_file
    from pipelines.sources import list_source_files
    from pipelines.spec import parse_spec
    from storage import StoredDataset, commit_version, write_shard

    if not (out / "manifest.json").exists():
        spec = parse_spec({"name": "codec", "domain": domain, "source": str(folder), "output": str(out),
                           "ops": OPS[domain]})
        files, _ = list_source_files(str(folder), domain)
        rows = []
        for f in files:
            result = process_file(FileState(f, os.path.getsize(f), 0, f), domain, spec.ops)
            assert not result.errors, result.errors
            rows += result.records
        shards = [write_shard(str(out), rows[i:i + SHARD_ROWS], compression="none", narrow=False)
                  for i in range(0, len(rows), SHARD_ROWS)]
        commit_version(str(out), shards, [])
    return list(StoredDataset(str(out)))


def random_meshes(count: int) -> list[dict]:
    """bench.loader's synthetic samples (random points, faces and eigenvectors: nothing for a
    codec to find but the int64 faces' high bytes), as the loader benchmark stores them."""
    from bench.loader_formats import mesh_arrays

    return [{"sample_id": f"r{i:06d}", "source": f"synthetic#{i}", "domain": "mesh", **mesh_arrays(i, 3000, 64)}
            for i in range(count)]


def write_config(rows: list[dict], uri: Path, compression: str, narrow: bool, below: float) -> dict:
    """The rows as a dataset in one configuration: bytes, write seconds, stored bytes per column."""
    from storage import commit_version, write_shard

    start = time.perf_counter()
    shards = [write_shard(str(uri), rows[i:i + SHARD_ROWS], compression=compression, narrow=narrow,
                          compress_below=below) for i in range(0, len(rows), SHARD_ROWS)]
    seconds = time.perf_counter() - start
    commit_version(str(uri), shards, [])
    per_column: dict[str, int] = {}
    for s in shards:
        meta = pq.read_metadata(uri / s["path"])
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                col = meta.row_group(g).column(c)
                name = col.path_in_schema.split(".")[0].removesuffix("__shape").removesuffix("__pad")
                per_column[name] = per_column.get(name, 0) + col.total_compressed_size
    return {"bytes": sum(s["bytes"] for s in shards), "write_s": seconds, "columns": per_column}


def check_equal(rows: list[dict], uri: Path) -> None:
    from storage import StoredDataset

    got = list(StoredDataset(str(uri)))
    assert len(got) == len(rows)
    for want, have in zip(rows, got):
        assert want.keys() == have.keys(), (uri, set(want) ^ set(have))
        for k, v in want.items():
            if isinstance(v, np.ndarray):
                assert v.dtype == have[k].dtype and v.shape == have[k].shape, (uri, k)
                assert v.tobytes() == have[k].tobytes(), (uri, k)
            else:
                assert v == have[k], (uri, k)


def read_seconds(uri: Path) -> dict[str, float]:
    """CPU and wall seconds for one pass over every sample through the reader and the loader.
    CPU time (this process, all its threads) is what the layout costs; wall time also holds
    whatever the other processes on a shared machine take from us."""
    from gdl_data.loader import GeometryStream
    from storage import StoredDataset

    out, counts = {}, []
    for name, one_pass in (("reader", lambda: len(list(StoredDataset(str(uri))))),
                           ("loader", lambda: sum(1 for _ in GeometryStream(str(uri), shuffle=False)))):
        cpu, wall = time.process_time(), time.perf_counter()
        counts.append(one_pass())
        out[name], out[name + "_wall"] = time.process_time() - cpu, time.perf_counter() - wall
    assert counts[0] == counts[1]
    return out


def shuffle_alternative(rows: list[dict]) -> dict[str, float]:
    """Byte-stream-split by hand (byte j of every float in stream j) before lz4 / zstd, on all
    float32 array bytes of a domain: compressed size / raw size, with and without the shuffle."""
    floats = [v for r in rows for v in r.values()
              if isinstance(v, np.ndarray) and v.dtype == np.float32 and v.ndim]
    raw = np.concatenate([v.reshape(-1) for v in floats]).view(np.uint8)
    split = np.ascontiguousarray(raw.reshape(-1, 4).T)
    out = {}
    for codec in ("lz4", "zstd"):
        out[codec] = pa.compress(raw, codec=codec).size / raw.size
        out[codec + "+split"] = pa.compress(split, codec=codec).size / raw.size
    try:   # does pyarrow split binary columns itself?
        table = pa.table({"a": pa.array([raw[:64].tobytes()], pa.binary())})
        pq.write_table(table, pa.BufferOutputStream(), use_dictionary=False,
                       column_encoding={"a": "BYTE_STREAM_SPLIT"})
        out["pyarrow_binary_split"] = "accepted"
    except Exception as exc:   # noqa: BLE001 - the message is the finding
        out["pyarrow_binary_split"] = f"refused: {str(exc).splitlines()[0][:90]}"
    return out


ALWAYS = float("inf")


def configs(codecs: list[str]) -> list[tuple[str, bool, float]]:
    """(codec, narrow int64, compress_below): none, then each codec on every array column
    without and with narrowing, and only on the array columns it shrinks to COMPRESS_BELOW
    (narrowing those: the default rule; for lz4 also other thresholds)."""
    out = [("none", False, ALWAYS)]   # narrowing goes with a codec: none+i32 is none
    for c in codecs:
        if c != "none":
            out += [(c, False, ALWAYS), (c, True, ALWAYS), (c, True, COMPRESS_BELOW)]
        if c == "lz4":   # other thresholds: compress what the codec shrinks by 1/5, by 1/2
            out += [(c, True, 0.8), (c, True, 0.5)]
    return out


def label(codec: str, narrow: bool, below: float = ALWAYS) -> str:
    return codec + ("+i32" if narrow else "") + ("" if below == ALWAYS else f" ≤{below:.2g}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--codecs", default="none,snappy,lz4,zstd,zstd-3,zstd-9")
    p.add_argument("--workdir", default=".gdl-work/bench-codec")
    args = p.parse_args(argv)
    root = Path(args.workdir).resolve()
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    raw = write_raw(root / "raw")
    rows = {d: computed_rows(raw[d], d, root / "computed" / d) for d in DOMAINS[:4]}
    rows["random-mesh"] = random_meshes(RANDOM_MESHES)
    print(f"rows ready in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{d} {len(r)}" for d, r in rows.items()), flush=True)
    results: dict[tuple[str, str, bool, float], dict] = {}
    for d in DOMAINS:
        for config in configs(args.codecs.split(",")):
            uri = root / "configs" / d / label(*config).replace(" ≤", "-below-")
            shutil.rmtree(uri, ignore_errors=True)
            results[(d, *config)] = {"uri": uri, **write_config(rows[d], uri, *config)}
            check_equal(rows[d], uri)
            read_seconds(uri)   # page cache warm, imports done
    times: dict[tuple, list[dict]] = {k: [] for k in results}
    for _ in range(args.reps):   # interleaved, so load from other processes hits all alike
        for key, r in results.items():
            times[key].append(read_seconds(r["uri"]))
    report(rows, results, times)
    for d in DOMAINS:
        print(f"{d}: float bytes compressed / raw: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in shuffle_alternative(rows[d]).items()))
    print(f"total {time.perf_counter() - t0:.0f} s; load average {load0:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end; pyarrow {pa.__version__}")


def report(rows: dict, results: dict, times: dict) -> None:
    keys = ("reader", "loader", "reader_wall", "loader_wall")
    for d in DOMAINS:
        n, base = len(rows[d]), results[d, "none", False, ALWAYS]
        t_base = {k: statistics.median(t[k] for t in times[d, "none", False, ALWAYS]) for k in keys}
        print(f"\n{d}: {n} samples; uncompressed {base['bytes'] / n / 1e3:.1f} kB/sample; largest "
              "columns " + ", ".join(f"{c} {b / n / 1e3:.1f}" for c, b in
                                     sorted(base["columns"].items(), key=lambda x: -x[1])[:4]))
        print(f"{'layout':16s} {'kB/sample':>9s} {'÷none':>6s} {'write ms':>8s} {'reader cpu ms':>13s} "
              f"{'÷none':>6s} {'loader cpu ms':>13s} {'÷none':>6s} {'wall ms r / l':>15s}")
        for (dd, *config), r in results.items():
            if dd != d:
                continue
            t = {k: statistics.median(x[k] for x in times[(d, *config)]) for k in keys}
            print(f"{label(*config):16s} {r['bytes'] / n / 1e3:9.1f} {r['bytes'] / base['bytes']:6.3f} "
                  f"{r['write_s'] * 1e3:8.0f} {t['reader'] * 1e3:13.1f} {t['reader'] / t_base['reader']:6.2f} "
                  f"{t['loader'] * 1e3:13.1f} {t['loader'] / t_base['loader']:6.2f} "
                  f"{t['reader_wall'] * 1e3:7.1f} / {t['loader_wall'] * 1e3:5.1f}")
        chosen = results.get((d, COMPRESSION, NARROW, COMPRESS_BELOW))
        if chosen:
            print(f"default ({label(COMPRESSION, NARROW, COMPRESS_BELOW)}) per column, kB/sample "
                  "before -> after: " + ", ".join(
                      f"{c} {b / n / 1e3:.1f} -> {chosen['columns'].get(c, 0) / n / 1e3:.1f}"
                      for c, b in sorted(base["columns"].items(), key=lambda x: -x[1])[:8]))


if __name__ == "__main__":
    main()
