"""How one sample's named arrays become one Parquet row, and back.

The layout (chosen for read speed into training; see bench/RESULTS.md):

* a numeric array `name` is two columns: `name` (binary: the array's bytes, C order, little
  endian) and `name__shape` (fixed_size_list<int64>[ndim]); the dtype is in the manifest and in
  the Parquet field metadata (`gdl.dtype`). Any Arrow reader decodes it with
  `np.frombuffer(value, dtype).reshape(shape)`. Nested `list<float>` columns were 5x slower to
  decode (shared/FIELD-NOTES.md).
* narrowing (writer's choice, per shard): an int64 array column whose values all fit a smaller
  signed integer is stored as that (`gdl.stored_dtype` in the field metadata, e.g. "<i4"); the
  bytes then decode with `np.frombuffer(value, stored_dtype).reshape(shape).astype(dtype)`, and
  every reader here widens them back, so rows keep the contract's int64.
* a 0-d numeric value (e.g. `nside`, `num_nodes`) is a plain int64/float64 column.
* a 1-d string array (e.g. `node_ids`) is a `list<string>` column.
* `sample_id`, `source`, `domain`, `geometry_key` are string columns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Container, Iterable, Mapping

import numpy as np
import pyarrow as pa

SHAPE_SUFFIX = "__shape"
STORED_DTYPE = b"gdl.stored_dtype"
# Narrower integer dtypes tried in order when narrowing int64 columns; see narrow_dtype.
NARROW_INTS = (np.dtype("<i4"),)
META_KEYS = ("sample_id", "source", "domain", "geometry_key")   # string columns


@dataclass(frozen=True)
class ColumnInfo:
    """What the manifest says about one stored array column."""

    name: str
    encoding: str      # "tensor" | "scalar" | "strings" | "string"
    dtype: str         # numpy dtype string, e.g. "<f4"; "str" for strings
    ndim: int

    def to_json(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "dtype": self.dtype, "ndim": self.ndim}

    @classmethod
    def from_json(cls, name: str, d: Mapping[str, Any]) -> "ColumnInfo":
        return cls(name, d["encoding"], d["dtype"], int(d["ndim"]))  # extra keys (stats) ignored


def column_info(name: str, value: Any) -> ColumnInfo:
    if name in META_KEYS:
        return ColumnInfo(name, "string", "str", 0)
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        if arr.ndim != 1:
            raise TypeError(f"column '{name}': only 1-d string arrays are storable")
        return ColumnInfo(name, "strings", "str", 1)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"column '{name}': dtype {arr.dtype} is not storable (no pickle, ever)")
    if arr.ndim == 0:
        return ColumnInfo(name, "scalar", arr.dtype.newbyteorder("<").str, 0)
    return ColumnInfo(name, "tensor", arr.dtype.newbyteorder("<").str, arr.ndim)


def arrow_fields(info: ColumnInfo, stored: np.dtype | None = None) -> list[pa.Field]:
    """Arrow fields of a column; `stored`: the dtype of a tensor column's bytes if not info.dtype."""
    meta = {b"gdl.dtype": info.dtype.encode(), b"gdl.encoding": info.encoding.encode()}
    if stored is not None and stored.str != info.dtype:
        meta[STORED_DTYPE] = stored.str.encode()
    if info.encoding == "string":
        return [pa.field(info.name, pa.string())]
    if info.encoding == "strings":
        return [pa.field(info.name, pa.list_(pa.string()), metadata=meta)]
    if info.encoding == "scalar":
        return [pa.field(info.name, pa.from_numpy_dtype(np.dtype(info.dtype)), metadata=meta)]
    return [pa.field(info.name, pa.binary(), metadata=meta),
            pa.field(info.name + SHAPE_SUFFIX, pa.list_(pa.int64(), info.ndim))]


def narrow_dtype(flat: np.ndarray, dtype: np.dtype) -> np.dtype:
    """The first of NARROW_INTS that holds every value of `flat` (an int64 column's values, all
    samples joined); else `dtype`."""
    lo, hi = (int(flat.min()), int(flat.max())) if flat.size else (0, 0)
    for narrow in NARROW_INTS:
        info = np.iinfo(narrow)
        if info.min <= lo and hi <= info.max:
            return narrow
    return dtype


def rows_to_table(rows: list[Mapping[str, Any]], infos: Mapping[str, ColumnInfo],
                  narrow: bool | Container[str] = False) -> pa.Table:
    """Encode sample rows into one Arrow table with the given column layout (missing -> null).
    `narrow` (True or the column names): store those int64 tensor columns in a narrower dtype
    where the values fit (narrow_dtype)."""
    arrays, fields = [], []
    for name, info in infos.items():
        values = [row.get(name) for row in rows]
        if info.encoding == "tensor":
            wanted = narrow is True or (narrow is not False and name in narrow)
            column_arrays, column_fields = tensor_column(name, values, info, wanted)
            arrays += column_arrays
            fields += column_fields
            continue
        fs = arrow_fields(info)
        fields += fs
        if info.encoding == "string":
            arrays.append(pa.array(values, pa.string()))
        elif info.encoding == "strings":
            arrays.append(pa.array([None if v is None else [str(s) for s in v] for v in values],
                                   fs[0].type))
        else:
            arrays.append(pa.array([None if v is None else np.asarray(v).item() for v in values],
                                   fs[0].type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# A column's bytes beyond this go through pyarrow's own list-of-bytes path, which splits them
# into chunks (one binary array's offsets are int32).
ONE_BUFFER_BYTES = 1 << 30


def tensor_column(name: str, values: list[Any], info: ColumnInfo, narrow: bool) -> tuple[list[pa.Array], list[pa.Field]]:
    """The (bytes, shape) arrays and fields of one tensor column: every sample's values joined
    into one buffer with their offsets (one copy, no Python bytes per sample)."""
    dtype = np.dtype(info.dtype)
    present = [np.ascontiguousarray(v, dtype=dtype) for v in values if v is not None]
    for a in present:
        if a.ndim != info.ndim:
            raise ValueError(f"column '{name}': expected {info.ndim}-d, got shape {a.shape}")
    flat = np.concatenate([a.ravel() for a in present]) if present else np.zeros(0, dtype)
    valid = np.array([v is not None for v in values], dtype=bool)
    shapes = np.zeros((len(values), info.ndim), dtype=np.int64)
    shapes[valid] = [a.shape for a in present] if present else np.zeros((0, info.ndim), np.int64)
    return tensor_arrays(info, flat, valid, shapes, narrow)


def tensor_arrays(info: ColumnInfo, flat: np.ndarray, valid: np.ndarray, shapes: np.ndarray,
                  narrow: bool) -> tuple[list[pa.Array], list[pa.Field]]:
    """The (bytes, shape) arrays and fields of a tensor column given as every present value's
    elements joined (`flat`, info.dtype), which rows hold one (`valid`) and each row's shape
    (`shapes`, zeros where null): the layout rows_to_table writes, from rows or from stored
    columns alike (storage/concat.py)."""
    dtype = np.dtype(info.dtype)
    stored = narrow_dtype(flat, dtype) if narrow and dtype == np.dtype("<i8") else dtype
    fs = arrow_fields(info, stored)
    mask = pa.array(~valid) if not valid.all() else None
    shape_array = pa.FixedSizeListArray.from_arrays(pa.array(shapes.ravel()), info.ndim, mask=mask)
    # a null row's shape is all zeros, so its size is 0 too
    sizes = shapes.prod(axis=1) * stored.itemsize
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    values = flat.astype(stored, copy=False)
    if flat.size * stored.itemsize > ONE_BUFFER_BYTES:
        raw = values.view(np.uint8)
        data = [raw[offsets[i]:offsets[i + 1]].tobytes() if ok else None for i, ok in enumerate(valid)]
        return [pa.array(data, pa.binary()), shape_array], fs
    validity = None if mask is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    binary = pa.Array.from_buffers(pa.binary(), len(valid), [validity, pa.py_buffer(offsets.astype(np.int32)),
                                   pa.py_buffer(values)], int((~valid).sum()))
    return [binary, shape_array], fs


def decode_column(table: pa.Table, info: ColumnInfo) -> list[Any]:
    """All values of one column of a table, decoded to numpy (None where null)."""
    col = table.column(info.name)
    if info.encoding == "string":
        return col.to_pylist()
    if info.encoding == "strings":
        return [None if v is None else np.asarray(v, dtype=str) for v in col.to_pylist()]
    if info.encoding == "scalar":
        dtype = np.dtype(info.dtype)
        return [None if v is None else dtype.type(v) for v in col.to_pylist()]
    meta = table.schema.field(info.name).metadata or {}
    stored = np.dtype(meta[STORED_DTYPE].decode()) if STORED_DTYPE in meta else None
    return decode_tensors(col, table.column(info.name + SHAPE_SUFFIX), np.dtype(info.dtype), stored)


def decode_tensors(data: pa.ChunkedArray, shapes: pa.ChunkedArray, dtype: np.dtype,
                   stored: np.dtype | None = None) -> list[Any]:
    """Zero-copy views into the Arrow buffers: one np.frombuffer per chunk, one slice per value.
    Bytes stored narrower (`stored`) are widened to `dtype` once per chunk: one copy, and each
    value a view into it."""
    out: list[Any] = []
    for chunk, shape_chunk in zip(data.chunks, shapes.chunks):
        offsets_buf, values_buf = chunk.buffers()[1], chunk.buffers()[2]
        offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=len(chunk) + 1 + chunk.offset)
        offsets = offsets[chunk.offset:]
        raw = np.frombuffer(values_buf, dtype=np.uint8) if values_buf is not None else np.empty(0, np.uint8)
        if stored is not None and stored != dtype and len(offsets):
            raw, offsets = _widen(raw, offsets, stored, dtype)
        dims = shape_rows(shape_chunk)
        valid = _validity(chunk)
        for i in range(len(chunk)):
            if not valid[i]:
                out.append(None)
                continue
            buf = raw[offsets[i]:offsets[i + 1]]
            out.append(buf.view(dtype).reshape(tuple(dims[i])))
    return out


def shape_rows(shape_chunk: pa.Array) -> np.ndarray:
    """The (rows, ndim) int64 shapes of one chunk of a `__shape` column, straight from its Arrow
    buffers: pyarrow.compute (fill_null, is_valid) would import pandas on first use, 0.3 s of a
    loader's first epoch. A null shape's row holds whatever the buffer has (its value is null too)."""
    ndim = shape_chunk.type.list_size
    child = shape_chunk.values
    dims = np.frombuffer(child.buffers()[1], dtype=np.int64,
                         count=child.offset + len(child))[child.offset:] if len(child) else \
        np.empty(0, np.int64)
    start = shape_chunk.offset * ndim
    return dims[start:start + len(shape_chunk) * ndim].reshape(len(shape_chunk), ndim)


def _widen(raw: np.ndarray, offsets: np.ndarray, stored: np.dtype,
           dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The values between offsets[0] and offsets[-1] as `dtype` bytes, and their new offsets.
    Every value of a column has the same stored dtype, so offsets are multiples of its size."""
    narrow = raw[offsets[0]:offsets[-1]].view(stored)
    # From pyarrow's memory pool, like the Parquet decoder's own buffers, so that a freed row
    # group's pages serve the next one instead of fresh pages from the kernel.
    wide = np.frombuffer(pa.allocate_buffer(narrow.size * dtype.itemsize), dtype)
    np.copyto(wide, narrow, casting="safe")
    return wide.view(np.uint8), (offsets.astype(np.int64) - offsets[0]) // stored.itemsize * dtype.itemsize


def widen_table(table: pa.Table, only: Container[str] | None = None) -> pa.Table:
    """The table with every narrowed tensor column (or those in `only`) widened back to its dtype
    (`gdl.stored_dtype` dropped), so that decoding it, or a copy of it kept elsewhere (the
    loader's decoded cache), is zero-copy again. One copy of those columns; the others are
    untouched."""
    fields, columns = list(table.schema), list(table.columns)
    for j, f in enumerate(fields):
        meta = dict(f.metadata or {})
        if STORED_DTYPE not in meta or meta.get(b"gdl.encoding") != b"tensor":
            continue
        if only is not None and f.name not in only:
            continue
        stored, dtype = np.dtype(meta.pop(STORED_DTYPE).decode()), np.dtype(meta[b"gdl.dtype"].decode())
        columns[j] = pa.chunked_array([_widen_chunk(c, stored, dtype) for c in columns[j].chunks], pa.binary())
        fields[j] = f.with_metadata(meta)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, table.schema.metadata))


def _widen_chunk(chunk: pa.Array, stored: np.dtype, dtype: np.dtype) -> pa.Array:
    offsets = np.frombuffer(chunk.buffers()[1], np.int32, count=len(chunk) + 1 + chunk.offset)[chunk.offset:]
    values = chunk.buffers()[2]
    raw = np.frombuffer(values, np.uint8) if values is not None else np.empty(0, np.uint8)
    wide, new_offsets = _widen(raw, offsets, stored, dtype)
    if new_offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError("a row group's widened column exceeds 2 GiB; write smaller row groups")
    validity = None
    if chunk.null_count:
        validity = pa.py_buffer(np.packbits(_validity(chunk), bitorder="little"))
    return pa.Array.from_buffers(pa.binary(), len(chunk), [validity, pa.py_buffer(new_offsets.astype(np.int32)),
                                                          pa.py_buffer(wide)], chunk.null_count)


def _validity(array: pa.Array) -> np.ndarray:
    """Boolean validity of each slot, from the bitmap (no pyarrow.compute)."""
    if array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    return _bits(array.buffers()[0], array.offset, len(array))


def _bits(buffer: pa.Buffer, offset: int, length: int) -> np.ndarray:
    """`length` booleans of an Arrow bitmap (least significant bit first) from bit `offset`."""
    bits = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), bitorder="little")
    return bits[offset:offset + length].astype(bool)


def infer_infos(rows: Iterable[Mapping[str, Any]]) -> dict[str, ColumnInfo]:
    """Column layout for a batch of rows; a column's dtype must agree across rows."""
    infos: dict[str, ColumnInfo] = {}
    seen: set[tuple[str, str, int]] = set()     # arrays whose kind a row before already had
    for row in rows:
        for name, value in row.items():
            if value is None:
                continue
            if isinstance(value, np.ndarray):
                kind = (name, value.dtype.str, value.ndim)
                if kind in seen:
                    continue
                seen.add(kind)
            info = column_info(name, value)
            prev = infos.get(name)
            if prev is None:
                infos[name] = info
            elif prev != info:
                raise TypeError(f"column '{name}' is {prev.dtype}/{prev.ndim}-d in one sample "
                                f"and {info.dtype}/{info.ndim}-d in another")
    return infos


def stored_infos(schema: pa.Schema) -> dict[str, ColumnInfo]:
    """The column layout of a stored shard, from its own field metadata (no manifest needed),
    in schema order; pad and shape columns are no columns of their own."""
    infos = {}
    for field in schema:
        meta = field.metadata or {}
        if b"gdl.encoding" in meta:
            enc = meta[b"gdl.encoding"].decode()
            ndim = schema.field(field.name + SHAPE_SUFFIX).type.list_size if enc == "tensor" else (
                1 if enc == "strings" else 0)
            infos[field.name] = ColumnInfo(field.name, enc, meta[b"gdl.dtype"].decode(), ndim)
        elif field.name in META_KEYS:
            infos[field.name] = ColumnInfo(field.name, "string", "str", 0)
    return infos


def skip_pandas_probe() -> None:
    """Let pyarrow find no pandas when it first asks, for this process's speed.

    pyarrow imports pandas (when installed) the first time it builds any array, only to ask
    whether the input is a pandas object: 0.25 s of every `gdl` command, more than planning a
    6,000-record file. Called once by the CLI before pyarrow builds an array: pyarrow's probe
    then fails, and pandas is imported as usual by whatever really needs it later (pyarrow
    itself retries it before any conversion to pandas: its pandas-shim.pxi `_check_import`).
    """
    import sys
    if "pandas" in sys.modules:
        return
    sys.meta_path.insert(0, _NoPandasYet)
    try:
        pa.array(np.zeros(1))
    finally:
        sys.meta_path.remove(_NoPandasYet)


class _NoPandasYet:
    """An import finder that refuses pandas (while pyarrow probes for it)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] == "pandas":
            raise ImportError("pandas: not imported for pyarrow's probe (storage/arrays.py)")
        return None


def to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column of numbers or booleans without nulls as numpy, read from its buffers; any other
    as an object array. pyarrow's own `to_numpy` goes through its pandas conversion, which
    imports pandas when installed (0.25-0.5 s of a command that never uses it)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    start, stop = array.offset, array.offset + len(array)
    if array.null_count == 0 and (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        name = str(array.type)
        dtype = np.dtype({"halffloat": "float16", "float": "float32", "double": "float64"}.get(name, name))
        return np.frombuffer(array.buffers()[1], dtype=dtype, count=stop)[start:]
    if array.null_count == 0 and pa.types.is_boolean(array.type):
        return _bits(array.buffers()[1], start, len(array))
    return np.array(array.to_pylist(), dtype=object)
