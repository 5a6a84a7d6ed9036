"""A local decoded cache: row groups kept as Arrow IPC files, memory-mapped on later epochs.

Reading Parquet copies every compressed array once (pyarrow decompresses it into a fresh
buffer); a memory-mapped IPC file needs no copy at all: its tensors are views of the page cache.
Uncompressed arrays are read in place from Parquet already (storage/pages.py): for them the
cache only adds its first-epoch writes. The
first read of a row group writes it here (one more copy, paid once); every later read, in any
process, maps it. Opt-in (`cache_dir=`): it costs local disk the size of the columns read.

Correctness: a file's name is a SHA-256 of the shard's content hash (the manifest's `sha256`,
written with the shard; for datasets written before it, the shard file is hashed once per
process), the row group, the column list and LAYOUT, so a key never points at other bytes.
Files are written to a temporary name and renamed, so workers and ranks that write the same
group at once are safe and a reader never sees half a file. Mappings are private
(copy-on-write): a transform that changes a tensor in place changes neither the file nor other readers.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from storage import StoredDataset
from storage.arrays import widen_table

LAYOUT = "gdl-decoded-1"   # change when the cached bytes' meaning changes


class DecodedCache:
    """Decoded row groups of one dataset version under `folder` (created if missing)."""

    def __init__(self, folder: str | os.PathLike, store: StoredDataset,
                 columns: Sequence[str] | None):
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.columns = columns
        self._file_digests: dict[int, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file_digests": {}}

    def shard_digest(self, shard: int) -> str:
        entry = self.store.manifest["shards"][shard]
        if "sha256" in entry:
            return entry["sha256"]
        if shard not in self._file_digests:   # an older dataset: hash the file itself, once
            digest = hashlib.sha256()
            with self.store.fs.open(self.store.shard_path(shard), "rb") as fh:
                while chunk := fh.read(1 << 24):
                    digest.update(chunk)
            self._file_digests[shard] = digest.hexdigest()
        return self._file_digests[shard]

    def path(self, shard: int, group: int) -> Path:
        key = "|".join([LAYOUT, self.shard_digest(shard), str(group), ",".join(self.columns or ["*"])])
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.arrow"

    def load(self, shard: int, group: int) -> tuple[pa.Table, np.ndarray] | None:
        """(table, the whole private mapping as uint8) for a cached group; None on a miss."""
        try:
            with open(self.path(shard, group), "rb") as fh:
                mapping = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        except FileNotFoundError:
            return None
        table = pa.ipc.open_file(pa.py_buffer(mapping)).read_all()
        return table, np.frombuffer(mapping, dtype=np.uint8)

    def save(self, shard: int, group: int, table: pa.Table) -> None:
        """Write a row group as decoded arrays in the contract's dtypes (narrowed columns widened
        here, once), so that every later hit is a view into the file's mapping."""
        table = widen_table(table)
        final = self.path(shard, group)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        with pa.OSFile(str(tmp), "wb") as sink:
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        os.replace(tmp, final)


def writable_view(value: Any, mapping: np.ndarray) -> Any:
    """A read-only array that lies inside `mapping`, re-viewed through the (writable, private)
    mapping itself, so that it becomes a tensor without a copy; anything else unchanged."""
    if not isinstance(value, np.ndarray) or value.flags.writeable or value.dtype.kind not in "biuf":
        return value
    offset = value.ctypes.data - mapping.ctypes.data
    if offset < 0 or offset + value.nbytes > mapping.nbytes or not value.flags.c_contiguous:
        return value
    return mapping[offset:offset + value.nbytes].view(value.dtype).reshape(value.shape)
