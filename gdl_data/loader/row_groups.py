"""The unit of reading: one Parquet row group of one shard, decoded to per-sample tensors.

Both datasets read through `RowGroupSource`. It pins the dataset version at construction, so
DataLoader workers started later, or a commit made meanwhile, cannot mix two versions. A row
group is read whole, in one pyarrow call: reading it a few rows at a time (iter_batches) measured
slower (bench/RESULTS.md, "Loader"); the writer caps a group at about 64 MiB
(storage.writer.ROW_GROUP_BYTES), so a decoded group stays small.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from gdl_data.loader.decoded_cache import DecodedCache, writable_view
from gdl_data.loader.shard_cache import Prefetcher, ShardCache
from gdl_data.loader.tensors import sample_tensors
from gdl_data.params import Integer, check_value
from storage import StoredDataset
from storage.fs import resolve
from storage.pages import group_end


@dataclass(frozen=True)
class RowGroup:
    """Row group `group` of shard `shard`: samples `start .. start + rows - 1`."""

    shard: int
    group: int
    start: int
    rows: int


def check_int(name: str, value: Any, low: int) -> int:
    """An integer argument >= low, or a ValueError that says so (gdl_data/params.py)."""
    return int(check_value(name, value, Integer(low)))


def check_columns(store: StoredDataset, columns: Sequence[str] | None) -> list[str] | None:
    """Validate a column projection early, saying which names exist."""
    if columns is None:
        return None
    if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise TypeError(f"columns must be a list of column names, e.g. ['pos', 'faces']; "
                        f"got {columns!r}")
    unknown = [c for c in columns if c not in store.columns]
    if unknown:
        raise ValueError(f"{store.uri} (version {store.version}) has no column {unknown}; "
                         f"choose from {sorted(store.columns)}")
    return list(dict.fromkeys(columns))


class RowGroupSource:
    """A pinned version of a dataset, listed and read by row group.

    Args:
        uri: dataset folder or fsspec URI.
        version: version to read; None: the current one at construction time.
        columns: logical column names to read (None: all stored columns).
        cache_dir: local folder for decoded row groups (decoded_cache.py); None: no cache.
        shard_cache: local folder for whole shards of a remote dataset (shard_cache.py), at most
            `shard_cache_bytes` of them; ignored for a local dataset. None: ranged reads.
    """

    def __init__(self, uri: str, version: int | None = None, columns: Sequence[str] | None = None,
                 cache_dir: str | os.PathLike | None = None, shard_cache: str | os.PathLike | None = None,
                 shard_cache_bytes: int = 8 << 30):
        self.store = StoredDataset(uri, version)
        self.columns = check_columns(self.store, columns)
        self.groups = self._list_groups()
        self.cache = None if cache_dir is None else DecodedCache(cache_dir, self.store, self.columns)
        self._pid = os.getpid()
        remote = not isinstance(self.store.fs, LocalFileSystem)
        self.shards = ShardCache(shard_cache, self.store, check_int("shard_cache_bytes", shard_cache_bytes, 1)) \
            if shard_cache is not None and remote else None

    def prefetcher(self, shards: Sequence[int], ahead: int) -> Prefetcher | None:
        """Downloads of the shards a worker will read, `ahead` beyond the current (shard cache only)."""
        return Prefetcher(self.shards, shards, ahead) if self.shards is not None and ahead else None

    def own_filesystem(self) -> None:
        """A forked DataLoader worker inherits the parent's filesystem object; s3fs and other
        async filesystems refuse to run in a fork ("not fork-safe"), so a worker gets its own
        (fsspec's instance cache is per process)."""
        if os.getpid() != self._pid:
            self.store.fs = resolve(self.store.uri)[0]
            self._pid = os.getpid()

    def _read_group(self, group: RowGroup) -> pa.Table:
        self.own_filesystem()
        if self.shards is None:
            return self.store.read_row_group(group.shard, group.group, self.columns)
        with self.shards.open(group.shard) as path:
            pf = pq.ParquetFile(path, memory_map=True, metadata=self.store.footer(group.shard))
            return pf.read_row_group(group.group, columns=self.store.parquet_columns(self.columns),
                                     use_threads=False)

    def _read_rows(self, group: RowGroup) -> list[dict[str, Any]]:
        """A row group's rows, plain tensor columns as views of the (local or cached) shard file's
        mapping, no copy (storage/reader.py read_group_rows)."""
        self.own_filesystem()
        if self.shards is None:
            return self.store.read_group_rows(group.shard, group.group, self.columns)
        # the group's bytes, as soon as the shard's download has them (shard_cache.py); the last
        # epoch's mapping of the cached shard when it is still there (storage/pages.py
        # MappingCache), but only when the cache holds the whole dataset: a kept mapping of an
        # evicted shard would hold its disk space beyond the cache's limit
        end = group_end(self.store.footer(group.shard), group.group)
        if self.shards.max_bytes < sum(s.get("bytes") or 0 for s in self.store.manifest["shards"]):
            mapped = self.shards.mapped(group.shard, end)
        else:
            mapped = self.store.mappings.get((group.shard, group.group), end,
                                             lambda: self.shards.mapped(group.shard, end),
                                             lambda: self.shards.held(group.shard))
        return self.store.read_group_rows(group.shard, group.group, self.columns, mapped=mapped)

    def _list_groups(self) -> list[RowGroup]:
        groups, start = [], 0
        for shard, entry in enumerate(self.store.manifest["shards"]):
            if not entry["rows"]:
                continue
            rows = self.store.row_group_rows(shard)
            if sum(rows) != entry["rows"]:
                raise ValueError(f"{self.store.shard_path(shard)}: the manifest says {entry['rows']} "
                                 f"rows, the Parquet footer {sum(rows)}; the shard was changed "
                                 f"after commit, re-run the pipeline")
            for group, n in enumerate(rows):
                groups.append(RowGroup(shard, group, start, n))
                start += n
        return groups

    def __len__(self) -> int:
        return len(self.store)

    def read(self, group: RowGroup, lo: int = 0, hi: int | None = None) -> list[dict[str, Any]]:
        """Samples `lo .. hi-1` of a row group (positions inside the group) as tensor dicts."""
        if self.cache is None:
            rows = self._read_rows(group)
            hi = group.rows if hi is None else hi
            memo: dict[int, Any] = {}
            return [sample_tensors(row, memo) for row in rows[lo:hi]]
        cached = self.cache.load(group.shard, group.group)
        if cached is None:
            table, mapping = self._read_group(group), None
            if self.cache:
                self.cache.save(group.shard, group.group, table)
        else:
            table, mapping = cached
        hi = group.rows if hi is None else hi
        if (lo, hi) != (0, group.rows):
            table = table.slice(lo, hi - lo)
        rows = self.store.decode(table, self.columns)
        if mapping is not None:
            rows = [{k: writable_view(v, mapping) for k, v in row.items()} for row in rows]
        memo: dict[int, Any] = {}       # arrays shared by rows (storage/geometry.py) become one tensor
        return [sample_tensors(row, memo) for row in rows]
