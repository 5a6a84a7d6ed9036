"""Reading one version of a dataset: rows by index, whole columns, the errors table."""
from __future__ import annotations

import bisect
from functools import cached_property
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.arrays import SHAPE_SUFFIX, ColumnInfo, decode_column
from storage.fs import join, resolve
from storage.manifest import load_manifest


class StoredDataset:
    """A committed version: `len()`, `[i]` -> dict of numpy arrays, `.manifest`, `.errors`."""

    def __init__(self, uri: str, version: int | None = None):
        self.uri = str(uri)
        self.manifest = load_manifest(self.uri, version)
        self.fs, self.root = resolve(self.uri)
        self.columns = {name: ColumnInfo.from_json(name, d) for name, d in self.manifest["columns"].items()}
        self._starts = np.cumsum([0] + [s["rows"] for s in self.manifest["shards"]]).tolist()
        self._cache: tuple[int, pa.Table] | None = None

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

    def read_shard(self, shard: int, columns: Sequence[str] | None = None) -> pa.Table:
        with self.fs.open(self.shard_path(shard), "rb") as fh:
            table = pq.read_table(fh, columns=self.parquet_columns(columns))
        return table

    def decode(self, table: pa.Table, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Rows of a shard table as dicts of numpy arrays (nulls, i.e. absent columns, omitted)."""
        names = [c for c in (columns or self.columns) if c in table.column_names]
        decoded = {c: decode_column(table, self.columns[c]) for c in names}
        return [{c: decoded[c][i] for c in names if decoded[c][i] is not None}
                for i in range(table.num_rows)]

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for a dataset of {n}")
        i %= n
        shard = bisect.bisect_right(self._starts, i) - 1
        if self._cache is None or self._cache[0] != shard:
            self._cache = (shard, self.read_shard(shard))
        table = self._cache[1]
        row = i - self._starts[shard]
        return self.decode(table.slice(row, 1))[0]

    def __iter__(self):
        for shard in range(len(self.manifest["shards"])):
            yield from self.decode(self.read_shard(shard))

    @cached_property
    def errors(self) -> pa.Table:
        with self.fs.open(join(self.root, self.manifest["errors"]), "rb") as fh:
            return pq.read_table(fh)

    @cached_property
    def index(self) -> pa.Table:
        with self.fs.open(join(self.root, self.manifest["index"]), "rb") as fh:
            return pq.read_table(fh)
