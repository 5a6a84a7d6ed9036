"""Shards laid out so that uncompressed tensor values can be read in place (storage/pages.py).

Reading a value in place hands out a view of the memory-mapped file, and a tensor needs its bytes
aligned for its dtype. Two things decide where a value lands:

* between values: PLAIN puts a 4-byte length before each value, so 8-byte dtypes would alternate
  between aligned and not; an uncompressed tensor column is therefore written with the standard
  DELTA_LENGTH_BYTE_ARRAY encoding (all lengths first, then the values back to back), in one page
  per column chunk (ALIGNED_PAGE_BYTES): each value then starts where the last one ended, and
  every array's byte length is a multiple of its dtype's alignment;
* before the first value: page headers and level runs of varying length, which a writer cannot
  size. So before each such column the writer puts a pad column `<name>__pad` (binary, not null,
  empty except in the first row of each row group) and sizes those bytes so that the column's
  first value starts on a 64-byte boundary of the file: written once with pads of ALIGNMENT
  bytes, the first values' offsets read back, each pad grown by what its column lacks (to 64-127
  bytes), written again and checked. Starting at 64 bytes, not 0, keeps each pad page's header
  the same size when its pad grows (its page size stays a 2-byte varint up to ~2,000 rows per
  group), so the second pass is aligned: growing from 0 crossed that varint's 1-byte limit, and
  most shards needed a third write (~1 ms of a one-record shard's ~8 ms write).

Pad columns are plain Parquet any reader may ignore; they are in no manifest, and StoredDataset
never returns them. pyarrow, DuckDB and every Parquet reader since 2015 decode
DELTA_LENGTH_BYTE_ARRAY. Measured in bench/RESULTS.md, "Loader ... (issue 14)".
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.pages import binary_spans

PAD_SUFFIX = "__pad"
ALIGNMENT = 64
ALIGNED_PAGE_BYTES = 1 << 30   # above any column chunk (rows_per_group keeps groups near 64 MiB)
PASSES = 4

Writer = Callable[[pa.Table, Mapping[str, str], Sequence[str], Mapping[str, str]], bytes]


def plain_tensor_columns(table: pa.Table, codecs: Mapping[str, str]) -> list[str]:
    """Tensor data columns (storage/arrays.py layout) stored without a codec, in schema order."""
    return [f.name for f in table.schema if f.type == pa.binary() and codecs.get(f.name) == "none"
            and (f.metadata or {}).get(b"gdl.encoding") == b"tensor"]


def with_pads(table: pa.Table, columns: Sequence[str], group_rows: int,
              pads: Mapping[tuple[int, str], int]) -> pa.Table:
    """The table with a pad column before each of `columns`: pads[(row group, column)] zero bytes
    in the group's first row, empty values elsewhere."""
    arrays, fields = [], []
    for field, column in zip(table.schema, table.columns):
        if field.name in columns:
            values = [b""] * table.num_rows
            for (group, name), size in pads.items():
                if name == field.name:
                    values[group * group_rows] = bytes(size)
            fields.append(pa.field(field.name + PAD_SUFFIX, pa.binary(), nullable=False))
            arrays.append(pa.array(values, pa.binary()))
        fields.append(field)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=table.schema.metadata))


def value_lengths(table: pa.Table, name: str) -> np.ndarray:
    """Byte length of each value of a binary column (0 where null)."""
    chunk = table.column(name).combine_chunks()
    offsets = np.frombuffer(chunk.buffers()[1], np.int32, count=len(chunk) + 1 + chunk.offset)[chunk.offset:]
    return np.diff(offsets).astype(np.int64)


def first_value_offsets(data: bytes, table: pa.Table, columns: Sequence[str],
                        group_rows: int) -> list[tuple[tuple[int, str], int]]:
    """((row group, column), file offset of the column's first value) in file order, for the
    chunks of `columns` that are plain (storage/pages.py binary_spans)."""
    buf = np.frombuffer(data, np.uint8)
    lengths = {name: value_lengths(table, name) for name in columns}
    meta = pq.read_metadata(pa.BufferReader(data))
    index = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
    out = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for name in columns:
            j = index[name]
            spans = binary_spans(buf, group.column(j), meta.schema.column(j).max_definition_level,
                                 lengths[name][g * group_rows:g * group_rows + group.num_rows])
            if spans is not None and len(spans):
                out.append(((g, name), int(spans[0, 0])))
    return out


def aligned_parquet_bytes(table: pa.Table, codecs: Mapping[str, str], write: Writer,
                          group_rows: int) -> bytes | None:
    """Parquet bytes with each uncompressed tensor column's first value of each row group on an
    ALIGNMENT boundary (module docstring); None when the table has no such column.
    `write(table, codecs, unstated, encodings)`: the bytes of a table, `unstated` columns without
    statistics (a pad's min/max would change its page header's size with its length),
    `encodings` a Parquet encoding by column."""
    columns = plain_tensor_columns(table, codecs)
    if not columns or any(c + PAD_SUFFIX in table.column_names for c in columns):
        return None
    pad_names = [c + PAD_SUFFIX for c in columns]
    codecs = {**codecs, **{p: "none" for p in pad_names}}
    groups = -(-table.num_rows // group_rows)
    pads = {(g, c): ALIGNMENT for g in range(groups) for c in columns}
    for _ in range(PASSES):
        data = write(with_pads(table, columns, group_rows, pads), codecs, pad_names,
                     {c: "DELTA_LENGTH_BYTE_ARRAY" for c in columns})
        shift, changed = 0, False
        for key, offset in first_value_offsets(data, table, columns, group_rows):   # a pad moves all that follows
            need = -(offset + shift) % ALIGNMENT
            if need:
                pads[key] = pads.get(key, 0) + need
                shift, changed = shift + need, True
        if not changed:
            break
    return data   # after PASSES still off (never seen): the reader copies what is misaligned
