"""Reading one version of a dataset: rows by index, row groups, whole shards, the errors table.

Local shards are memory-mapped: pyarrow then decodes the binary array values straight from the
page cache (one copy) instead of through a Python file object (two copies and the GIL): 1,600 ->
about 7,000 samples/s for 1 MB meshes (bench/RESULTS.md, "Loader"). `read_group_rows` (the
loader's path) does not decode uncompressed tensor columns at all: their arrays are views of a
private mapping of the file (storage/pages.py), no copy.
"""
from __future__ import annotations

import bisect
import contextlib
from collections import OrderedDict
from functools import cached_property
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fsspec.implementations.local import LocalFileSystem

from storage.aligned import PAD_SUFFIX
from storage.arrays import (SHAPE_SUFFIX, STORED_DTYPE, ColumnInfo, decode_column, shape_rows, stored_infos,
                            widen_table)

from storage.fs import join, resolve
from storage.geometry import GEOMETRY_KEY
from storage.manifest import load_manifest
from storage.pages import MappingCache, binary_spans, map_private, span_arrays

GEOMETRY_CACHE_BYTES = 1 << 30    # decoded shared rows kept per process (at least the last one)
LAYOUT_CACHE_GROUPS = 4096        # row groups whose in-place value positions are kept per process


class StoredDataset:
    """A committed version: `len()`, `[i]` -> dict of numpy arrays, `.manifest`, `.errors`."""

    def __init__(self, uri: str, version: int | None = None):
        self.uri = str(uri)
        self.manifest = load_manifest(self.uri, version)
        self.fs, self.root = resolve(self.uri)
        self.columns = {name: ColumnInfo.from_json(name, d) for name, d in self.manifest["columns"].items()}
        # Shards whose samples all failed have no Parquet file and 0 rows; bisect skips them.
        self._starts = np.cumsum([0] + [s["rows"] for s in self.manifest["shards"]]).tolist()
        self._cache: tuple[tuple[int, int], pa.Table] | None = None   # last (shard, row group) read
        self._footers: dict[int, pq.FileMetaData] = {}
        self._chunks: dict[int, dict[str, tuple[int, int]]] = {}   # shard -> plain tensor chunks
        self._layouts: OrderedDict[tuple, dict[str, tuple[np.ndarray, np.ndarray]]] = OrderedDict()
        self.mappings = MappingCache()   # shard mappings reused across epochs (storage/pages.py)
        # Shared rows (storage/geometry.py): joined to sample rows by `geometry_key`; decoded once
        # per process and kept in an LRU, so 1,000 maps on one grid decode the grid once.
        geometry = self.manifest.get("geometry") or {}
        self.geometry_columns = frozenset(geometry.get("columns", ()))
        self._geometry_paths = {g["key"]: g["path"] for g in geometry.get("files", ())}
        self._geometry_rows: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        # Sent to DataLoader workers: the manifest travels, decoded tables and footers do not.
        state = dict(self.__dict__)
        state.update(_cache=None, _footers={}, _chunks={}, _layouts=OrderedDict(), mappings=MappingCache(),
                     _geometry_rows=OrderedDict())
        state.pop("errors", None)
        state.pop("index", None)
        return state

    @property
    def version(self) -> int:
        return self.manifest["version"]

    def __len__(self) -> int:
        return self.manifest["sample_count"]

    def shard_path(self, shard: int) -> str:
        return join(self.root, self.manifest["shards"][shard]["path"])

    def parquet_columns(self, columns: Sequence[str] | None) -> list[str] | None:
        """Physical Parquet columns for logical names (tensor columns carry a `__shape` sibling)."""
        if columns is None:
            return None
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise KeyError(f"{self.uri}: no column {unknown}; stored columns: {sorted(self.columns)}")
        out = []
        for c in columns:
            out.append(c)
            if self.columns[c].encoding == "tensor":
                out.append(c + SHAPE_SUFFIX)
        return out

    def row_columns(self, shard: int, columns: Sequence[str] | None) -> list[str] | None:
        """Physical columns to read from a shard for logical `columns` (None: all): those the
        shard holds, plus `geometry_key` when a shared column is asked for."""
        if columns is None:
            return None
        if self.geometry_columns.intersection(columns):
            columns = [*columns, GEOMETRY_KEY]
        held = set(self.footer(shard).schema.to_arrow_schema().names)
        return [c for c in self.parquet_columns(list(dict.fromkeys(columns))) if c in held]

    def geometry_row(self, key: str) -> dict[str, Any]:
        """The decoded shared row `key` (read-only arrays, one object per process)."""
        hit = self._geometry_rows.get(key)
        if hit is not None:
            self._geometry_rows.move_to_end(key)
            return hit[0]
        path = join(self.root, self._geometry_paths[key])
        if isinstance(self.fs, LocalFileSystem):
            table = pq.read_table(path, memory_map=True)
        else:
            with self.fs.open(path, "rb") as fh:
                table = pq.read_table(fh)
        row = self.decode(table.drop_columns([GEOMETRY_KEY]), sorted(self.geometry_columns))[0]
        self._geometry_rows[key] = (row, sum(getattr(v, "nbytes", 0) for v in row.values()))
        total = sum(n for _, n in self._geometry_rows.values())
        while total > GEOMETRY_CACHE_BYTES and len(self._geometry_rows) > 1:
            total -= self._geometry_rows.popitem(last=False)[1][1]
        return row

    def _parquet_file(self, shard: int) -> pq.ParquetFile:
        path = self.shard_path(shard)
        footer = self._footers.get(shard)
        if isinstance(self.fs, LocalFileSystem):
            pf = pq.ParquetFile(path, memory_map=True, metadata=footer)
        else:
            pf = pq.ParquetFile(self.fs.open(path, "rb"), metadata=footer)
        self._footers[shard] = pf.metadata
        return pf

    def footer(self, shard: int) -> pq.FileMetaData:
        """A shard's Parquet footer (row groups, column chunk sizes), read once per process."""
        if shard not in self._footers:
            self._parquet_file(shard).close()
        return self._footers[shard]

    def row_group_rows(self, shard: int) -> list[int]:
        """Rows in each row group of a shard."""
        footer = self.footer(shard)
        return [footer.row_group(g).num_rows for g in range(footer.num_row_groups)]

    def read_row_group(self, shard: int, group: int, columns: Sequence[str] | None = None) -> pa.Table:
        """One row group of a shard (logical column names; None: all), undecoded, narrowed int
        columns widened back (storage/arrays.py widen_table)."""
        pf = self._parquet_file(shard)
        try:
            return widen_table(pf.read_row_group(group, columns=self.row_columns(shard, columns), use_threads=False))
        finally:
            pf.close()

    def read_group_rows(self, shard: int, group: int, columns: Sequence[str] | None = None,
                        mapped: np.ndarray | None = None) -> list[dict[str, Any]]:
        """The rows of one row group, as `decode(read_row_group(shard, group, columns))` gives them,
        but the tensor columns whose chunk is plain (storage/pages.py: uncompressed, PLAIN or
        DELTA_LENGTH, no nulls) are not copied: each array is a writable view of a private memory
        map of the shard file, mapped afresh by each call. `mapped`: such a mapping of a local copy
        of a remote shard, complete or holding at least this group's bytes (pages.group_end; the
        loader's shard cache); a remote shard without one is read through pyarrow."""
        wanted = list(dict.fromkeys(columns or self.columns))
        if mapped is None and not isinstance(self.fs, LocalFileSystem):
            return self.decode(self.read_row_group(shard, group, wanted), wanted)
        if mapped is None:
            path = self.shard_path(shard)
            mapped = self.mappings.get((shard, group), 0, lambda: map_private(path))
        buf = mapped
        direct = self._direct_layout(shard, group, wanted, buf)
        rest = [c for c in wanted if c not in direct]
        if rest:
            rows = self.decode(self._read_mapped(buf, shard, group, self.row_columns(shard, rest)), rest)
        else:
            rows = [{} for _ in range(self.footer(shard).row_group(group).num_rows)]
        for name, (spans, dims) in direct.items():
            for row, array in zip(rows, span_arrays(buf, spans, dims, np.dtype(self.columns[name].dtype))):
                row[name] = array
        return [{c: row[c] for c in wanted if c in row} for row in rows] if direct else rows

    def _read_mapped(self, buf: np.ndarray, shard: int, group: int, physical: list[str]) -> pa.Table:
        """Columns of a row group through pyarrow, from a mapping of the shard (no second open)."""
        pf = pq.ParquetFile(pa.BufferReader(pa.py_buffer(buf)), metadata=self.footer(shard))
        try:
            return widen_table(pf.read_row_group(group, columns=physical, use_threads=False))
        finally:
            pf.close()

    def _direct_layout(self, shard: int, group: int, wanted: list[str],
                       buf: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """name -> (value spans in the file, shapes) of the wanted columns of a row group that are
        read in place. Kept per process for LAYOUT_CACHE_GROUPS groups: shards never change, and
        later epochs then need neither the page headers nor pyarrow for these columns."""
        key = (shard, group, tuple(wanted))
        if key in self._layouts:
            self._layouts.move_to_end(key)
            return self._layouts[key]
        candidates = self._plain_chunks(shard)
        plain = {name: candidates[name] for name in wanted if name in candidates}
        layout: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if plain:
            chunks = self.footer(shard).row_group(group)
            shapes = self._read_mapped(buf, shard, group, [c + SHAPE_SUFFIX for c in plain])
            for name, (index, max_def) in plain.items():
                # a copy: the layout is kept, and must hold no reference to this mapping
                dims = np.concatenate([shape_rows(c) for c in shapes.column(name + SHAPE_SUFFIX).chunks]).copy()
                lengths = dims.prod(axis=1) * np.dtype(self.columns[name].dtype).itemsize
                spans = binary_spans(buf, chunks.column(index), max_def, lengths)
                if spans is not None:
                    layout[name] = (spans, dims)
        self._layouts[key] = layout
        if len(self._layouts) > LAYOUT_CACHE_GROUPS:
            self._layouts.popitem(last=False)
        return layout

    def _plain_chunks(self, shard: int) -> dict[str, tuple[int, int]]:
        """Tensor columns of a shard that may be read in place: name -> (Parquet column index,
        max definition level); narrowed columns and shared ones (geometry) are not."""
        if shard not in self._chunks:
            footer = self.footer(shard)
            fields = {f.name: f for f in footer.schema.to_arrow_schema()}
            plain = {}
            for j in range(footer.num_columns):
                column = footer.schema.column(j)
                name, info = column.path, self.columns.get(column.path)
                if info is None or info.encoding != "tensor" or name in self.geometry_columns \
                        or name not in fields or STORED_DTYPE in (fields[name].metadata or {}):
                    continue
                plain[name] = (j, column.max_definition_level)
            self._chunks[shard] = plain
        return self._chunks[shard]

    def read_shard(self, shard: int, columns: Sequence[str] | None = None) -> pa.Table:
        physical = self.row_columns(shard, columns)
        if isinstance(self.fs, LocalFileSystem):
            return widen_table(pq.read_table(self.shard_path(shard), columns=physical, memory_map=True))
        with self.fs.open(self.shard_path(shard), "rb") as fh:
            return widen_table(pq.read_table(fh, columns=physical))

    def decode(self, table: pa.Table, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Rows of a shard table as dicts of numpy arrays (nulls, i.e. absent columns, omitted),
        with the shared columns of each row's `geometry_key` joined in."""
        names = [c for c in (columns or self.columns) if c in table.column_names]
        decoded = {c: decode_column(table, self.columns[c]) for c in names}
        rows = [{c: decoded[c][i] for c in names if decoded[c][i] is not None}
                for i in range(table.num_rows)]
        shared = [c for c in (columns or self.columns) if c in self.geometry_columns]
        if shared and GEOMETRY_KEY in table.column_names:
            for row, key in zip(rows, table.column(GEOMETRY_KEY).to_pylist()):
                if key is not None:
                    geometry = self.geometry_row(key)
                    row.update({c: geometry[c] for c in shared if c in geometry})
        return rows

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for a dataset of {n}")
        i %= n
        shard = bisect.bisect_right(self._starts, i) - 1
        row = i - self._starts[shard]
        # Read the row group holding the row, not the whole shard (64x less for random access).
        group_starts = np.cumsum([0] + self.row_group_rows(shard)).tolist()
        group = bisect.bisect_right(group_starts, row) - 1
        if self._cache is None or self._cache[0] != (shard, group):
            self._cache = ((shard, group), self.read_row_group(shard, group))
        return self.decode(self._cache[1].slice(row - group_starts[group], 1))[0]

    def __iter__(self):
        for shard, entry in enumerate(self.manifest["shards"]):
            if entry["rows"]:
                yield from self.decode(self.read_shard(shard))

    def scan(self, columns: Sequence[str] | None = None, filter: Any = None) -> pa.Table:
        """The whole version as one Arrow table (undecoded), with column projection and a row
        filter pushed down to Parquet: row groups whose statistics rule the filter out are not
        read. `filter` is a pyarrow expression on scalar or string columns, e.g.
        `pyarrow.compute.field("nside") == 16`; decode rows with `.decode(table)`."""
        paths = [self.shard_path(i) for i, s in enumerate(self.manifest["shards"]) if s["rows"]]
        if not paths:
            return pa.table({})
        import pyarrow.dataset as pads   # here, not at the top: it imports pandas (0.2-0.6 s)
        dataset = pads.dataset(paths, format="parquet", filesystem=self.fs)
        if not self.geometry_columns:
            table = dataset.to_table(columns=self.parquet_columns(columns), filter=filter)
            return table.drop_columns([c for c in table.column_names if c.endswith(PAD_SUFFIX)
                                       and c.removesuffix(PAD_SUFFIX) in self.columns and c not in self.columns])
        # Shared columns are joined in (one copy per row: scan is for analysis, not training);
        # a filter on a shared column is applied after the join, others are pushed down.
        wanted = list(columns or self.columns)
        own = self.parquet_columns([c for c in wanted if c not in self.geometry_columns] + [GEOMETRY_KEY])
        own = [c for c in own if c in dataset.schema.names]
        try:
            return self._join(dataset.to_table(columns=own, filter=filter), wanted)
        except (pa.ArrowInvalid, KeyError):
            if filter is None:
                raise
            return self._join(dataset.to_table(columns=own), wanted).filter(filter)

    def _join(self, table: pa.Table, wanted: Sequence[str]) -> pa.Table:
        """`table` with the shared columns in `wanted` taken from the geometry files by key."""
        shared = [c for c in self.parquet_columns([c for c in wanted if c in self.geometry_columns])]
        if not shared:
            return table
        import pyarrow.dataset as pads   # here, not at the top: it imports pandas (0.2-0.6 s)
        fs_paths = [join(self.root, p) for p in self._geometry_paths.values()]
        geometry = pads.dataset(fs_paths, format="parquet", filesystem=self.fs).to_table(
            columns=[GEOMETRY_KEY, *shared])
        index = pc.index_in(table.column(GEOMETRY_KEY), value_set=geometry.column(GEOMETRY_KEY))
        for name in shared:
            column = geometry.column(name).take(index)
            if name in table.column_names:   # rows without a key keep their own values
                column = pc.coalesce(table.column(name), column)
                table = table.drop_columns([name])
            table = table.append_column(geometry.schema.field(name), column)
        return table.select([c for c in self.parquet_columns(wanted) if c in table.column_names])

    @cached_property
    def errors(self) -> pa.Table:
        with self.fs.open(join(self.root, self.manifest["errors"]), "rb") as fh:
            return pq.read_table(fh, use_threads=False)   # small: no thread pool to start


def read_rows(uri: str, shard_path: str, start: int, count: int,
              columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows [start, start+count) of one shard file, decoded, reading only the row groups that
    hold them and only `columns` (None: all; `sample_id` is always included). Used to reuse an
    old version's op outputs; the layout comes from the file's own field metadata."""
    fs, root = resolve(uri)
    with fs.open(join(root, shard_path), "rb") as fh:
        pf = pq.ParquetFile(fh)
        schema = pf.schema_arrow
        wanted = None if columns is None else {"sample_id", *columns}
        names = [f.name for f in schema if wanted is None or f.name in wanted
                 or f.name.removesuffix(SHAPE_SUFFIX) in wanted]
        groups, first, offset = [], None, 0
        for g in range(pf.metadata.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            if offset + rows > start and offset < start + count:
                groups.append(g)
                first = offset if first is None else first
            offset += rows
        table = pf.read_row_groups(groups, columns=names).slice(start - (first or 0), count)
    infos = stored_infos(table.schema)
    decoded = {name: decode_column(table, info) for name, info in infos.items()}
    return [{k: v[i] for k, v in decoded.items() if v[i] is not None} for i in range(table.num_rows)]


def read_stored(uri: str, shard_path: str) -> pa.Table:
    """A whole shard file as stored, undecoded: its columns (pad columns left out), narrowed int
    columns still narrow. What a re-run copies unchanged rows from (storage/concat.py)."""
    fs, root = resolve(uri)
    path = join(root, shard_path)
    with contextlib.ExitStack() as stack:
        # a local file through pyarrow's own reader: no Python file object, no GIL per read
        source = path if isinstance(fs, LocalFileSystem) else stack.enter_context(fs.open(path, "rb"))
        pf = stack.enter_context(pq.ParquetFile(source))
        schema = pf.schema_arrow
        names = [n for name in stored_infos(schema) for n in (name, name + SHAPE_SUFFIX) if n in schema.names]
        return pf.read(columns=names, use_threads=False)
