"""A shard made of stored rows and new ones, joined at the Arrow level.

A re-run that changes one record of a shard rewrites that shard: most of its rows are unchanged,
and are copied from the old shard as Arrow slices (storage/reader.py read_stored), never decoded
to numpy and encoded again; the new rows join them as tables of their own (`rows_part`). The
result is the bytes a fresh write of all the rows gives (storage/writer.py encode_rows), because
what a fresh write decides over the whole shard is decided here over the joined columns:

* the column layout: infer_infos' order (by the first row holding a value, then by position
  within that row), each column's dtype agreeing wherever it has a value; a column that only
  parts without a value hold (all null there) is no column;
* int64 narrowing: over every value of the joined column (storage/arrays.py narrow_dtype), so a
  part stored narrow (or wide) is widened (or narrowed) as the whole shard needs;
* codecs: probed on the joined bytes, one buffer per column, as a fresh write has it;
* statistics: over the joined values (storage/stats.py values_stats).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Container, Mapping, Sequence

import numpy as np
import pyarrow as pa

from storage.arrays import (SHAPE_SUFFIX, STORED_DTYPE, ColumnInfo, _validity, arrow_fields, infer_infos,
                            rows_to_table, shape_rows, stored_infos, tensor_arrays)
from storage.stats import values_stats


def rows_part(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """New rows as a part to join: their own layout, nothing narrowed."""
    return rows_to_table(list(rows), infer_infos(rows))


def part_layout(part: pa.Table) -> list[tuple[int, ColumnInfo]]:
    """(first row holding a value, column) for each column of a part that holds one, in the order
    infer_infos meets them in the part's rows (a row's columns in schema order, nulls skipped)."""
    found = []
    for position, (name, info) in enumerate(stored_infos(part.schema).items()):
        base = 0
        for chunk in part.column(name).chunks:
            if chunk.null_count < len(chunk):
                found.append((base + int(np.argmax(_validity(chunk))), position, info))
                break
            base += len(chunk)
    return [(row, info) for row, _, info in sorted(found, key=lambda f: f[:2])]


def joined_infos(parts: Sequence[pa.Table]) -> dict[str, ColumnInfo]:
    """The layout infer_infos gives for the rows of all `parts` in order (module docstring)."""
    infos: dict[str, ColumnInfo] = {}
    for part in parts:
        for _, info in part_layout(part):
            prev = infos.setdefault(info.name, info)
            if prev != info:
                raise TypeError(f"column '{info.name}' is {prev.dtype}/{prev.ndim}-d in one sample "
                                f"and {info.dtype}/{info.ndim}-d in another")
    return infos


@dataclass
class Joined:
    """The columns of all parts joined: tensors as (values in their dtype, valid, shapes),
    the others as one Arrow array each."""

    infos: dict[str, ColumnInfo]
    rows: int
    tensors: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    others: dict[str, pa.Array] = field(default_factory=dict)


def join_parts(parts: Sequence[pa.Table]) -> Joined:
    """Every column of `parts` joined (one copy of its values)."""
    joined = Joined(joined_infos(parts), sum(p.num_rows for p in parts))
    layouts = [stored_infos(p.schema) for p in parts]
    for name, info in joined.infos.items():
        # a part stores the column as `info` says, or its rows have no value there
        held = [layout.get(name) == info for layout in layouts]
        if info.encoding == "tensor":
            pieces = [_tensor_piece(p, info, h) for p, h in zip(parts, held)]
            joined.tensors[name] = tuple(np.concatenate(column) for column in zip(*pieces))
        else:
            target = arrow_fields(info)[0].type
            joined.others[name] = pa.concat_arrays([_other_piece(p, info, target, h) for p, h in zip(parts, held)])
    return joined


def _other_piece(part: pa.Table, info: ColumnInfo, target: pa.DataType, held: bool) -> pa.Array:
    if not held:
        return pa.nulls(part.num_rows, target)
    chunks = [chunk.cast(target) for chunk in part.column(info.name).chunks]
    return pa.concat_arrays(chunks) if chunks else pa.nulls(0, target)


def _tensor_piece(part: pa.Table, info: ColumnInfo, held: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as info.dtype, valid, shapes with zeros where null) of a part's tensor column,
    read from its Arrow buffers; a part without the column (not `held`) gives nulls."""
    dtype, n = np.dtype(info.dtype), part.num_rows
    if not held:
        return np.zeros(0, dtype), np.zeros(n, bool), np.zeros((n, info.ndim), np.int64)
    meta = part.schema.field(info.name).metadata or {}
    stored = np.dtype(meta[STORED_DTYPE].decode()) if STORED_DTYPE in meta else dtype
    data, shape_column = part.column(info.name), part.column(info.name + SHAPE_SUFFIX)
    if [len(c) for c in data.chunks] != [len(c) for c in shape_column.chunks]:
        data, shape_column = (pa.chunked_array([c.combine_chunks()]) for c in (data, shape_column))
    values, valids, shapes = [], [], []
    for chunk, shape_chunk in zip(data.chunks, shape_column.chunks):
        offsets = np.frombuffer(chunk.buffers()[1], np.int32, count=len(chunk) + 1 + chunk.offset)[chunk.offset:]
        buffer = chunk.buffers()[2]    # None when every value is empty
        raw = np.frombuffer(buffer, np.uint8) if buffer is not None else np.zeros(0, np.uint8)
        valid = _validity(chunk)
        dims = np.where(valid[:, None], shape_rows(shape_chunk), 0)
        # a null's value is empty in every writer's layout; checked, as the shapes are read apart
        if int(dims.prod(axis=1).sum()) * stored.itemsize != int(offsets[-1] - offsets[0]):
            raise ValueError(f"column '{info.name}': stored bytes do not match the stored shapes")
        values.append(raw[offsets[0]:offsets[-1]].view(stored).astype(dtype, copy=False))
        valids.append(valid)
        shapes.append(dims)
    if not values:
        return np.zeros(0, dtype), np.zeros(0, bool), np.zeros((0, info.ndim), np.int64)
    return np.concatenate(values), np.concatenate(valids), np.concatenate(shapes)


def joined_table(joined: Joined, narrow: bool | Container[str]) -> pa.Table:
    """The joined columns as the table rows_to_table(all rows, infos, narrow) gives."""
    arrays, fields = [], []
    for name, info in joined.infos.items():
        if info.encoding == "tensor":
            wanted = narrow is True or (narrow is not False and name in narrow)
            column_arrays, column_fields = tensor_arrays(info, *joined.tensors[name], wanted)
            arrays += column_arrays
            fields += column_fields
        else:
            arrays.append(joined.others[name])
            fields += arrow_fields(info)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def joined_stats(joined: Joined) -> dict[str, Any]:
    """column_stats of each column over all rows (storage/stats.py), from the joined values."""
    stats: dict[str, Any] = {}
    for name, info in joined.infos.items():
        if info.encoding == "tensor":
            values, valid, shapes = joined.tensors[name]
            stats[name] = values_stats([values], shapes[valid])
        elif info.encoding == "scalar":
            present = np.array([v for v in joined.others[name].to_pylist() if v is not None], dtype=info.dtype)
            stats[name] = values_stats([present], np.zeros((len(present), 0), np.int64))   # 0-d: no axes
        else:
            stats[name] = None      # strings: no statistics (column_stats skips them too)
    return stats
