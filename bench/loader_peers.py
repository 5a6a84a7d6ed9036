"""The streaming loaders people train with, on the loader benchmark's samples, local and on S3.

* LitData (Lightning): `litdata.optimize` writes the samples (dicts of tensors) into chunks,
  `litdata.StreamingDataset(dir, shuffle=True)` reads them (from S3 through its own chunk
  cache), as its README shows.
* WebDataset: `webdataset.ShardWriter` writes tar shards (one `.npy` per array), read with
  `WebDataset(urls, shardshuffle=..., cache_dir=...).shuffle(128).decode()`; from S3 over
  presigned HTTP URLs of the objects (read with curl, as its documentation does for object stores).
  LitData downloads with boto3 here: its optional obstore downloader refuses a plain-http
  endpoint such as moto's (LitData passes it no `allow_http`), so obstore is not installed
  (the `bench` extra leaves it out; LitData falls back to boto3 by itself).
* MosaicML `streaming`: `MDSWriter` writes the samples (typed `ndarray:` columns), and
  `StreamingDataset(local=...)`, or `(remote="s3://...", local=cache)`, reads them, subclassed
  to return tensors as its documentation shows; it runs from a folder of its own, and why is in
  bench/loader_mosaic.py.

All of them write about 64 MB per chunk or shard, as gdl-data's row groups are about 64 MiB.
`S3` starts a moto server on loopback (as tests/test_s3.py does) and uploads every format.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from bench.loader_formats import ARRAYS, mesh_arrays

PEERS = ("litdata", "wds", "mds")
BUCKET = "gdl-bench"
CHUNK_BYTES = 64 << 20


def write_parquet(out: Path, samples: int, vertices: int, k: int) -> float:
    """gdl-data's writer over the same samples (storage.write_shard, 128 per shard); seconds."""
    from bench.loader_formats import SHARD_ROWS
    from storage import commit_version, write_shard
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    shards = []
    for first in range(0, samples, SHARD_ROWS):
        rows = [{"sample_id": f"c0-{i:06d}", "source": f"synthetic#{i}", "domain": "mesh",
                 **mesh_arrays(i, vertices, k)} for i in range(first, min(samples, first + SHARD_ROWS))]
        shards.append(write_shard(str(out), rows))
    commit_version(str(out), shards, [])
    seconds = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def _litdata_item(i: int, vertices: int, k: int) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(v) for name, v in mesh_arrays(i, vertices, k).items()}


def write_litdata(root: Path, samples: int, vertices: int, k: int) -> float:
    """LitData's own writer over the same samples; seconds taken."""
    from litdata import optimize
    out = root / "litdata"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    optimize(fn=partial(_litdata_item, vertices=vertices, k=k), inputs=list(range(samples)),
             output_dir=str(out), chunk_bytes=CHUNK_BYTES, num_workers=1, mode="overwrite")
    return time.perf_counter() - start


def write_wds(root: Path, samples: int, vertices: int, k: int) -> float:
    """WebDataset's ShardWriter over the same samples; seconds taken."""
    import webdataset as wds
    out = root / "wds"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxsize=CHUNK_BYTES, verbose=0) as sink:
        for i in range(samples):
            arrays = mesh_arrays(i, vertices, k)
            sink.write({"__key__": f"{i:06d}", **{f"{name}.npy": arrays[name] for name in ARRAYS}})
    return time.perf_counter() - start


def write_mds(root: Path, samples: int, vertices: int, k: int) -> float:
    """MosaicML streaming's MDSWriter over the same samples; seconds taken."""
    from bench.loader_mosaic import write_mds as mosaic_write   # imports streaming: only when asked
    return mosaic_write(root, samples, vertices, k, CHUNK_BYTES)


def _wds_tensors(sample: dict) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(sample[f"{name}.npy"])) for name in ARRAYS}


def peer_dataset(method: str, root: Path, s3: str | None, cache: Path):
    """The peer's dataset, local or (with `s3`, the endpoint) from the bucket, cache emptied."""
    shutil.rmtree(cache, ignore_errors=True)   # a new process starts cold, as ours does
    if method.startswith("litdata"):
        from litdata import StreamingDataset
        if s3 is None:
            return StreamingDataset(str(root / "litdata"), shuffle=True, seed=0)
        return StreamingDataset(f"s3://{BUCKET}/litdata", shuffle=True, seed=0, cache_dir=str(cache),
                                storage_options={"endpoint_url": s3})
    import webdataset as wds
    cache.mkdir(parents=True)
    names = sorted(p.name for p in (root / "wds").glob("*.tar"))
    urls = [str(root / "wds" / n) for n in names]
    if s3:   # presigned HTTP URLs of the objects, fetched by WebDataset's curl
        import s3fs
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3})
        urls = [fs.url(f"{BUCKET}/wds/{n}", expires=3600) for n in names]
    dataset = wds.WebDataset(urls, shardshuffle=len(urls), seed=0, empty_check=False,
                             cache_dir=str(cache) if s3 else None)
    return dataset.shuffle(128).decode().map(_wds_tensors)


class S3:
    """A moto S3 server on loopback holding every format of the benchmark's data."""

    def __init__(self, root: Path, formats: tuple[str, ...] = ("parquet", "litdata", "wds")):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=self.endpoint,
                          FSSPEC_S3_ENDPOINT_URL=self.endpoint)   # child processes inherit them
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        import s3fs
        self.fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": self.endpoint})
        self.fs.mkdir(BUCKET)
        start = time.perf_counter()
        for name in formats:
            self.fs.put(str(root / name), f"{BUCKET}/{name}", recursive=True)
        self.upload_seconds = time.perf_counter() - start

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
