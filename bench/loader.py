"""Loader throughput: gdl-data's loader vs the per-sample caches users have today.

    python -m bench.loader [--samples 500] [--vertices 3000] [--k 64] [--reps 3] [--no-rss]
                           [--workers 0,2] [--device cpu|cuda] [--methods stream,litdata,...]

Same run, same samples (bench/loader_formats.py writes them once into --workdir), page cache
warm (every file is read once before timing). Each (method, num_workers) runs in a fresh
process, so "first epoch" includes what a new training process pays (worker start, allocator
warm-up); "steady" is the median of the later epochs over all repetitions. Methods:

* stream: GeometryStream(shuffle=True) straight from the Parquet shards;
* plain: the same from shards written as before issue 11 (no codec, no narrowing);
* cached: the same with cache_dir: the first epoch reads Parquet and writes the decoded cache
  (emptied before each process), later epochs memory-map it;
* map: GeometryDataset with a shuffling sampler (decoded row groups kept in memory);
* (a) npz, (b) pt: one file per sample; (c) ipc: memory-mapped Arrow IPC, zero copies;
* litdata, wds, mds: LitData, WebDataset and MosaicML streaming, each converting the same samples
  with its own writer (conversion time printed apart) and reading them as its documentation
  shows (bench/loader_peers.py, bench/loader_mosaic.py: streaming runs from a folder of its own,
  installed once with `python -m bench.loader_mosaic`);
* stream_s3, litdata_s3, wds_s3, mds_s3: the same from a moto S3 server on loopback, each through
  its own local cache (ours: the shard cache), emptied before each process: the first epoch
  downloads.
* stream_threads, stream_s3_threads (with workers only): the same streams through gdl-data's
  StreamLoader, whose num_workers are reading threads of the training process
  (gdl_data/loader/stream_loader.py), instead of DataLoader's worker processes; the same
  batches in the same order. The comparison with the peers is printed for both.

num_workers=0 yields single samples (batch_size=None); num_workers=2 yields batches of 16 built
by collate_graphs in the workers (the same collate for every method). The consumer touches one
element per 4 KiB page of every tensor, so lazily mapped memory is paid for, as a host-to-device
copy would. With --device cuda every method yields batches of 16 (collated in the main process
when num_workers=0) from pinned memory, and the consumer is `prefetch(loader, "cuda")`: the
figure is then samples/s delivered to the GPU. Peak RSS of a streaming epoch is measured at 1x
and 4x the dataset size.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset

from bench.loader_formats import ARRAYS, MappedIpc, NpzFiles, PtFiles, write_formats
from bench.loader_peers import BUCKET, S3, peer_dataset, write_litdata, write_mds, write_parquet, write_wds
from gdl_data.loader import GeometryDataset, GeometryStream, StreamLoader, collate_graphs, prefetch

METHODS = ("stream", "stream_threads", "plain", "cached", "map", "npz", "pt", "ipc", "litdata", "wds", "mds",
           "stream_s3", "stream_s3_threads", "litdata_s3", "wds_s3", "mds_s3")
LABELS = {"stream": "GeometryStream (Parquet)", "stream_threads": "StreamLoader threads (Parquet)",
          "stream_s3_threads": "S3: StreamLoader threads", "plain": "GeometryStream (uncompressed)",
          "cached": "GeometryStream + decoded cache",
          "map": "GeometryDataset (Parquet)",
          "npz": "(a) .npz per sample", "pt": "(b) .pt per sample", "ipc": "(c) Arrow IPC mmap",
          "litdata": "LitData StreamingDataset", "wds": "WebDataset", "mds": "MosaicML streaming",
          "stream_s3": "S3: GeometryStream", "litdata_s3": "S3: LitData", "wds_s3": "S3: WebDataset",
          "mds_s3": "S3: MosaicML streaming"}
OURS = {"local": "stream", "s3": "stream_s3"}   # + "_threads" with workers: StreamLoader
PEER_METHODS = {"local": ("litdata", "wds", "mds"), "s3": ("litdata_s3", "wds_s3", "mds_s3")}
BATCH = 16


def make_dataset(method: str, root: Path):
    columns = list(ARRAYS)
    if method == "plain":
        return GeometryStream(str(root / "parquet_plain"), columns=columns, shuffle=True, seed=0)
    if method in ("mds", "mds_s3"):
        from bench.loader_mosaic import mds_dataset
        remote = f"s3://{BUCKET}/mds" if method == "mds_s3" else None
        return mds_dataset(root, remote, root / f"cache-{method}", BATCH)
    if method in ("litdata", "wds", "litdata_s3", "wds_s3"):
        s3 = os.environ["AWS_ENDPOINT_URL"] if method.endswith("_s3") else None
        return peer_dataset(method, root, s3, root / f"cache-{method}")
    if method == "stream_s3":
        cache = root / "cache-stream_s3"
        shutil.rmtree(cache, ignore_errors=True)   # a new process starts cold: the first epoch downloads
        return GeometryStream(f"s3://{BUCKET}/parquet", columns=columns, shuffle=True, seed=0,
                              shard_cache=cache)
    if method in ("stream", "cached"):
        cache = None
        if method == "cached":
            cache = root / "decoded"
            shutil.rmtree(cache, ignore_errors=True)   # the first epoch starts from Parquet
        return GeometryStream(str(root / "parquet"), columns=columns, shuffle=True, seed=0,
                              cache_dir=cache)
    if method == "map":
        return GeometryDataset(str(root / "parquet"), columns=columns)
    return {"npz": NpzFiles, "pt": PtFiles, "ipc": MappedIpc}[method](root / method)


def touch(item) -> tuple[int, int]:
    """(samples, array bytes) of a sample or batch, reading one element per 4 KiB page."""
    payload = 0
    for name in ARRAYS:
        t = item[name]
        payload += t.nbytes
        flat = t.reshape(-1)
        flat[:: max(1, 4096 // t.element_size())].sum()
    return (len(item["ptr"]) - 1 if "ptr" in item else 1), payload


def make_loader(method: str, workers: int, root: Path, cuda: bool):
    """(dataset, loader): torch's DataLoader, or for *_threads gdl-data's StreamLoader."""
    if method.endswith("_threads"):
        dataset = make_dataset(method.removesuffix("_threads"), root)
        return dataset, StreamLoader(dataset, batch_size=BATCH, num_workers=workers, pin_memory=cuda)
    dataset = make_dataset(method, root)
    shuffle = not isinstance(dataset, IterableDataset)   # map-style: a shuffling sampler
    batch = BATCH if (workers or cuda) else None
    return dataset, DataLoader(dataset, batch_size=batch, shuffle=shuffle, num_workers=workers,
                               collate_fn=collate_graphs if batch else None, pin_memory=cuda,
                               persistent_workers=workers > 0)


def run_epochs(method: str, workers: int, root: Path, epochs: int, device: str = "cpu") -> dict:
    cuda = device.startswith("cuda")
    dataset, loader = make_loader(method, workers, root, cuda)
    seconds, samples, payload = [], 0, 0
    for epoch in range(epochs):
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        start, samples, payload = time.perf_counter(), 0, 0
        for item in (prefetch(loader, device) if cuda else loader):
            n, b = (len(item["ptr"]) - 1, sum(item[k].nbytes for k in ARRAYS)) if cuda else touch(item)
            samples, payload = samples + n, payload + b
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "samples": samples, "bytes": payload}


def high_water_mib() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that across exec from the parent."""
    with open("/proc/self/status") as fh:
        kib = next(line.split()[1] for line in fh if line.startswith("VmHWM:"))
    return int(kib) / 1024


def peak_rss(uri: str) -> dict:
    """Peak RSS (MiB) of one shuffled streaming epoch in a new process, before it, and its speed."""
    stream = GeometryStream(uri, columns=list(ARRAYS), shuffle=True)
    before, start = high_water_mib(), time.perf_counter()
    samples = sum(touch(s)[0] for s in stream)
    return {"samples": samples, "before_mib": before, "peak_mib": high_water_mib(),
            "per_s": samples / (time.perf_counter() - start)}


def in_child(task: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.loader", "--child", json.dumps(task)],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{task}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm_page_cache(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                while fh.read(1 << 24):
                    pass


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--vertices", type=int, default=3000)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5, help="per process: 1 first + the rest steady")
    p.add_argument("--reps", type=int, default=3, help="fresh processes per (method, workers)")
    p.add_argument("--workdir", default=".gdl-work/bench-loader")
    p.add_argument("--no-rss", action="store_true", help="skip the 4x dataset and the RSS runs")
    p.add_argument("--workers", default="0,2", help="num_workers values, comma-separated")
    p.add_argument("--device", default="cpu", help="cpu: touch pages; cuda: deliver to the GPU")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of: " + ", ".join(METHODS))
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def convert_peers(root: Path, args: argparse.Namespace, methods: list[str]) -> dict[str, float]:
    """Each peer's own writer over the same samples, once per data set; seconds (remembered)."""
    marker = root / "peers.json"
    params = {"samples": args.samples, "vertices": args.vertices, "k": args.k}
    done = json.loads(marker.read_text()) if marker.exists() else {}
    if done.get("params") != params:
        done = {"params": params}
    for name, write in (("litdata", write_litdata), ("wds", write_wds), ("mds", write_mds)):
        if any(m.startswith(name) for m in methods) and name not in done:
            done[name] = write(root, args.samples, args.vertices, args.k)
    if "parquet" not in done:   # ours, timed alone: the same samples into a new dataset
        done["parquet"] = write_parquet(root / "parquet_timed", args.samples, args.vertices, args.k)
    marker.write_text(json.dumps(done))
    return {k: v for k, v in done.items() if k != "params"}


def main(argv=None) -> None:
    args = parse(argv)
    if args.child:
        task = json.loads(args.child)
        result = peak_rss(task["uri"]) if "uri" in task else \
            run_epochs(task["method"], task["workers"], Path(task["root"]), task["epochs"],
                       task.get("device", "cpu"))
        print(json.dumps(result))
        return
    root = Path(args.workdir).resolve()
    methods = [m for m in args.methods.split(",") if m]
    t0 = time.perf_counter()
    write_formats(root, args.samples, args.vertices, args.k, copies=1 if args.no_rss else 4)
    conversions = convert_peers(root, args, methods)
    print(f"load average at start {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"data ready in {time.perf_counter() - t0:.0f} s under {root}; conversion of the "
          f"{args.samples} samples by each writer: " +
          ", ".join(f"{k} {v:.1f} s" for k, v in conversions.items()), flush=True)
    remote = {m: {"stream_s3": "parquet", "litdata_s3": "litdata", "wds_s3": "wds", "mds_s3": "mds"}[
        m.removesuffix("_threads")] for m in methods if "_s3" in m}
    s3 = S3(root, tuple(dict.fromkeys(remote.values()))) if remote else None   # each format once
    if s3:
        print(f"moto S3 on {s3.endpoint}: every format uploaded in {s3.upload_seconds:.1f} s", flush=True)
    warm_page_cache(root)
    runs: dict[tuple[str, int], list[dict]] = {}
    try:
        for _ in range(args.reps):   # interleaved, so load from other processes hits all alike
            for workers in [int(w) for w in args.workers.split(",")]:
                for method in methods:
                    if method.endswith("_threads") and not workers:
                        continue   # StreamLoader with 0 threads reads as the DataLoader row does
                    task = {"method": method, "workers": workers, "root": str(root),
                            "epochs": args.epochs, "device": args.device}
                    runs.setdefault((method, workers), []).append(in_child(task))
    finally:
        if s3:
            s3.close()
    report(runs)
    if not args.no_rss:
        for name, label in (("parquet", "1x"), ("parquet_x4", "4x")):
            r = in_child({"uri": str(root / name)})
            print(f"streaming, {label} dataset ({r['samples']} samples), one epoch in a new process: "
                  f"peak RSS {r['peak_mib']:.0f} MiB (before the epoch {r['before_mib']:.0f} MiB), "
                  f"{r['per_s']:.0f} samples/s")
    print(f"total {time.perf_counter() - t0:.0f} s; torch {torch.__version__}; device {args.device}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def report(runs: dict[tuple[str, int], list[dict]]) -> None:
    rows: dict[tuple[str, int], tuple[float, float, float]] = {}
    for (method, workers), results in runs.items():
        n, nbytes = results[0]["samples"], results[0]["bytes"]
        first = statistics.median(n / r["seconds"][0] for r in results)
        steady = statistics.median(n / s for r in results for s in r["seconds"][1:])
        rows[method, workers] = (first, steady, steady * nbytes / n / 1e6)
    print(f"\n{'method':32s} {'workers':>7s} {'first/s':>9s} {'steady/s':>9s} {'MB/s':>7s} "
          f"{'first÷(b)':>9s} {'steady÷(b)':>10s}")
    for (method, workers), (first, steady, mbs) in rows.items():
        ref_first, ref_steady, _ = rows.get(("pt", workers), (float("nan"),) * 3)   # (b) not run: nan
        print(f"{LABELS[method]:32s} {workers:7d} {first:9.0f} {steady:9.0f} {mbs:7.0f} "
              f"{first / ref_first:9.2f} {steady / ref_steady:10.2f}")
    compare_peers(rows)


def compare_peers(rows: dict[tuple[str, int], tuple[float, float, float]]) -> None:
    """Ours against the best peer (same place, same workers), and against the Arrow ceiling; with
    workers, ours through torch's DataLoader (processes) and through StreamLoader (threads)."""
    workers_seen = sorted({w for _, w in rows})
    print(f"\n{'where':6s} {'workers':>7s} {'ours through':22s} {'first ÷ best peer':>18s} "
          f"{'steady ÷ best peer':>19s} {'steady ÷ (c) ipc':>17s}")
    for where, stream in OURS.items():
        for workers in workers_seen:
            peers = [rows[m, workers] for m in PEER_METHODS[where] if (m, workers) in rows]
            for ours, how in ((stream, "DataLoader"), (stream + "_threads", "StreamLoader threads")):
                if (ours, workers) not in rows or not peers:
                    continue
                first, steady, _ = rows[ours, workers]
                ceiling = rows.get(("ipc", workers))
                print(f"{where:6s} {workers:7d} {how:22s} {first / max(p[0] for p in peers):18.2f} "
                      f"{steady / max(p[1] for p in peers):19.2f} "
                      f"{steady / ceiling[1] if ceiling else float('nan'):17.2f}")


if __name__ == "__main__":
    main()
