"""The loader benchmark's data: one set of synthetic meshes written in each format it compares.

Formats, all holding the same samples (pos (n, 3) f4, faces (2n-4, 3) i8, evecs (n, 64) f4,
mass (n,) f4; n about 3,000, so about 1 MB a sample):

* `parquet`: a gdl-data dataset (storage.write_shard / commit_version), read by the loader;
* `parquet_plain`: the same, written as before issue 11 (no codec, int64 as int64, no pad columns);
* `npz`: one uncompressed `.npz` per sample, loaded with numpy (DiffusionNet's operator cache);
* `pt`: one `.pt` per sample, `torch.load(weights_only=True)` (PyG-style processed files);
* `ipc`: Arrow IPC files of the same table, memory-mapped, every array a tensor view into the
  mapping (no copy at all: the ceiling).
"""
from __future__ import annotations

import json
import mmap
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from storage import commit_version, rows_to_table, write_shard
from storage.writer import ALIGN, COMPRESS_BELOW, COMPRESSION, NARROW
from storage.arrays import SHAPE_SUFFIX, infer_infos

ARRAYS = ("pos", "faces", "evecs", "mass")
SHARD_ROWS = 128


def mesh_arrays(i: int, vertices: int, k: int) -> dict[str, np.ndarray]:
    """Sample i: points on the unit sphere and random triangles; deterministic in i."""
    rng = np.random.default_rng(i)
    n = int(rng.integers(int(vertices * 0.9), int(vertices * 1.1)))
    pos = rng.normal(size=(n, 3))
    return {"pos": (pos / np.linalg.norm(pos, axis=1, keepdims=True)).astype(np.float32),
            "faces": rng.integers(0, n, size=(2 * n - 4, 3)).astype(np.int64),
            "evecs": rng.normal(size=(n, k)).astype(np.float32),
            "mass": rng.random(n).astype(np.float32)}


def write_formats(root: Path, samples: int, vertices: int, k: int, copies: int) -> dict:
    """Write every format under `root` (once: a marker remembers the parameters)."""
    params = {"samples": samples, "vertices": vertices, "k": k, "copies": copies, "layout": 6,
              "storage": [COMPRESSION, NARROW, COMPRESS_BELOW, ALIGN]}   # new defaults: write again
    marker = root / "params.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return params
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("npz", "pt", "ipc"):
        (root / sub).mkdir(parents=True)
    shards: dict[str, list] = {"parquet": [], "parquet_plain": [], "parquet_x4": []}
    for start in range(0, samples, SHARD_ROWS):
        arrays = [mesh_arrays(i, vertices, k) for i in range(start, min(samples, start + SHARD_ROWS))]
        for i, a in enumerate(arrays, start):
            np.savez(root / "npz" / f"{i:06d}.npz", **a)
            torch.save({name: torch.from_numpy(v) for name, v in a.items()}, root / "pt" / f"{i:06d}.pt")
        for copy in range(copies):   # copy 0 is the dataset; all copies make the bigger one
            rows = [{"sample_id": f"c{copy}-{i:06d}", "source": f"synthetic#{i}", "domain": "mesh", **a}
                    for i, a in enumerate(arrays, start)]
            if copy == 0:
                shards["parquet"].append(write_shard(str(root / "parquet"), rows))
                shards["parquet_plain"].append(write_shard(str(root / "parquet_plain"), rows,
                                                           compression="none", narrow=False,
                                                           align=False))
                table = rows_to_table(rows, infer_infos(rows)).select(
                    [c for name in ARRAYS for c in (name, name + SHAPE_SUFFIX)])
                with pa.OSFile(str(root / "ipc" / f"{start:06d}.arrow"), "wb") as sink:
                    with pa.ipc.new_file(sink, table.schema) as writer:
                        writer.write_table(table, max_chunksize=64)
            if copies > 1:
                shards["parquet_x4"].append(write_shard(str(root / "parquet_x4"), rows))
    for name, entries in shards.items():
        if entries:
            commit_version(str(root / name), entries, [])
    marker.write_text(json.dumps(params))
    return params


class NpzFiles(Dataset):
    """(a) one .npz per sample, as DiffusionNet caches its operators."""

    def __init__(self, folder: Path):
        self.paths = sorted(folder.glob("*.npz"))

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with np.load(self.paths[i]) as z:
            return {name: torch.from_numpy(z[name]) for name in ARRAYS}


class PtFiles(Dataset):
    """(b) one .pt per sample, as PyG's processed files, loaded without pickle code."""

    def __init__(self, folder: Path):
        self.paths = sorted(folder.glob("*.pt"))

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return torch.load(self.paths[i], weights_only=True)


class MappedIpc(Dataset):
    """(c) Arrow IPC memory-mapped (private, copy-on-write): tensors are views of the mapping."""

    def __init__(self, folder: Path):
        self.files = sorted(folder.glob("*.arrow"))
        self.rows: list[tuple[int, int]] = []
        for f, path in enumerate(self.files):
            n = pa.ipc.open_file(pa.memory_map(str(path))).read_all().num_rows
            self.rows += [(f, r) for r in range(n)]
        self._views: dict[int, list[dict[str, np.ndarray]]] = {}

    def __getstate__(self):
        return {**self.__dict__, "_views": {}}

    def _open(self, f: int) -> list[dict[str, np.ndarray]]:
        with open(self.files[f], "rb") as fh:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        base = pa.py_buffer(mapped)
        whole = np.frombuffer(mapped, dtype=np.uint8)   # writable view of the private mapping
        table = pa.ipc.open_file(pa.BufferReader(base)).read_all()
        views: list[dict[str, np.ndarray]] = [dict() for _ in range(table.num_rows)]
        for name, dtype in zip(ARRAYS, ("<f4", "<i8", "<f4", "<f4")):
            row = 0
            for chunk, shapes in zip(table[name].chunks, table[name + SHAPE_SUFFIX].chunks):
                offsets = np.frombuffer(chunk.buffers()[1], np.int32)[chunk.offset:]
                at = chunk.buffers()[2].address - base.address
                for j in range(len(chunk)):
                    raw = whole[at + offsets[j]:at + offsets[j + 1]]
                    views[row][name] = raw.view(dtype).reshape(shapes[j].as_py())
                    row += 1
        return views

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        f, r = self.rows[i]
        if f not in self._views:
            self._views[f] = self._open(f)
        return {name: torch.from_numpy(v) for name, v in self._views[f][r].items()}
