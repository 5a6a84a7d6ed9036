"""Writing datasets: immutable shards, then one atomic publish of a version's manifest.

A shard is a group of raw files. It is named by the hash of its *inputs* (the raw files' content
keys and the op recipes), so a run killed mid-way finds its finished shards by name on the next
run and reuses them; the result is byte-identical to an uninterrupted run. Each shard is:

    shards/<name>.parquet        the samples, one row each (absent when every sample failed)
    shards/<name>.files.parquet  the shard's index: one row per input item (a whole raw file, or one
                                 record of a multi-record file): file, file_key, size, mtime_ns,
                                 record (-1: the whole file), start, stop (its bytes), key (its
                                 content hash), samples, errors (JSON list). Written last: its
                                 presence marks the shard done.

Planning a re-run reads only the `.files.parquet` sidecars (never array data).
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.aligned import ALIGNED_PAGE_BYTES, aligned_parquet_bytes
from storage.arrays import ONE_BUFFER_BYTES, STORED_DTYPE, ColumnInfo, infer_infos, rows_to_table, widen_table
from storage.concat import join_parts, joined_stats, joined_table
from storage.fs import join, resolve, write_bytes_atomic
from storage.geometry import geometry_manifest
from storage.items_index import write_items_index
from storage.manifest import FORMAT, list_versions, publish_manifest
from storage.stats import column_stats, merge_stats

ERRORS_SCHEMA = pa.schema([
    ("source", pa.string()), ("sample_id", pa.string()), ("stage", pa.string()),
    ("error", pa.string()), ("message", pa.string()), ("traceback", pa.string()),
    ("file", pa.string()), ("file_key", pa.string()),
])
FILES_SCHEMA = pa.schema([
    ("shard", pa.string()), ("file", pa.string()), ("file_key", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
    ("record", pa.int64()), ("start", pa.int64()), ("stop", pa.int64()), ("key", pa.string()),
    ("samples", pa.int64()), ("errors", pa.string()),
])
# Row groups of 64 samples and at most ~64 MiB. The loader reads, splits and shuffles by row
# group: one group read costs ~1.7 ms besides its bytes (a memory map's page faults), so a group
# should carry ~64 MB to make that small per sample, and a decoded group is what a worker holds,
# so big samples (a 160k-vertex mesh with its eigenbasis is ~80 MB) get fewer rows per group.
# Measured in bench/RESULTS.md, "Loader".
ROW_GROUP_SIZE = 64
ROW_GROUP_BYTES = 64 << 20
# Codec of every column chunk, and int64 arrays narrowed on disk where they fit (storage/arrays.py,
# narrow_dtype). An array column is compressed only where the codec cuts a sample of its bytes
# by at least a third (COMPRESS_BELOW), and narrowed only where it is compressed: incompressible
# columns (eigenvectors of irregular meshes, random test data) are then stored as before and
# read at memory speed, with no decompression and no widening copy, while index columns (faces,
# edge_index: 3-50x smaller) and regular grids' geometry shrink. Chosen by `python -m
# bench.codec` on the four domains: bench/RESULTS.md, "Shard codec".
CODECS = ("none", "snappy", "lz4", "zstd")
COMPRESSION = "lz4"
NARROW = True
COMPRESS_BELOW = 2 / 3
# Uncompressed tensor columns laid out so that the loader reads them in place (storage/aligned.py).
ALIGN = True
PROBE_BLOCKS, PROBE_BYTES = 8, 256 << 10


def rows_per_group(table: pa.Table, max_rows: int = ROW_GROUP_SIZE,
                   max_bytes: int = ROW_GROUP_BYTES) -> int:
    """Rows per row group for this table: max_rows, fewer when its rows average over
    max_bytes / max_rows bytes once decoded; at least one."""
    if table.num_rows == 0:
        return max_rows
    return max(1, min(max_rows, max_bytes * table.num_rows // max(decoded_nbytes(table), 1)))


def decoded_nbytes(table: pa.Table) -> int:
    """Bytes of the table once read and decoded: narrowed columns count at their widened size."""
    total = table.nbytes
    for f in table.schema:
        stored = (f.metadata or {}).get(STORED_DTYPE)
        if stored:
            widen = np.dtype(f.metadata[b"gdl.dtype"].decode()).itemsize / np.dtype(stored.decode()).itemsize
            total += int(table.column(f.name).nbytes * (widen - 1))
    return total


def parquet_codec(compression: str) -> tuple[str, int | None]:
    """(Parquet codec, level) of a `compression` value: a name of CODECS, zstd optionally with
    a level ("zstd-3")."""
    codec, _, level = compression.partition("-")
    if compression not in CODECS and not (codec == "zstd" and level.isdigit() and 1 <= int(level) <= 22):
        raise ValueError(f"compression '{compression}' is not one of {', '.join(CODECS)} "
                         f"(or zstd-LEVEL, LEVEL 1-22)")
    return codec, int(level) if level else None


def compressed_fraction(column: pa.ChunkedArray, codec: str, level: int | None) -> float:
    """Compressed / raw size of up to PROBE_BLOCKS blocks of PROBE_BYTES spread over the values
    of a binary column (1.0 when empty): what the codec would save on its pages."""
    blocks = []
    for chunk in column.chunks:
        values = chunk.buffers()[2]
        if values is not None and values.size:
            raw = np.frombuffer(values, np.uint8)
            starts = np.linspace(0, max(raw.size - PROBE_BYTES, 0), PROBE_BLOCKS).astype(np.int64)
            blocks += [raw[s:s + PROBE_BYTES] for s in np.unique(starts)]
    if not blocks:
        return 1.0
    probe = np.concatenate(blocks)
    return pa.Codec(codec, level).compress(probe).size / probe.size


def column_codecs(table: pa.Table, compression: str, below: float) -> dict[str, str]:
    """Codec of each column: `compression`, except binary columns it would not shrink to `below`."""
    codec, level = parquet_codec(compression)
    return {f.name: "none" if codec != "none" and f.type == pa.binary()
            and compressed_fraction(table.column(f.name), codec, level) > below else codec
            for f in table.schema}


def encode_rows(rows: Sequence[Mapping[str, Any]], infos: Mapping[str, ColumnInfo], compression: str,
                compress_below: float, narrow: bool) -> tuple[pa.Table, dict[str, str]]:
    """The rows as an Arrow table and each column's codec (encode_table)."""
    return encode_table(lambda keep: rows_to_table(list(rows), infos, keep), compression, compress_below, narrow)


def encode_table(build: Callable[[bool | set[str]], pa.Table], compression: str, compress_below: float,
                 narrow: bool) -> tuple[pa.Table, dict[str, str]]:
    """A shard's table and each column's codec: int64 columns narrowed where the codec then
    compresses them (column_codecs on the narrowed bytes), kept as int64 elsewhere.
    `build(narrow)`: the table, int64 tensor columns narrowed as rows_to_table's `narrow` says."""
    table = build(narrow)
    codecs = column_codecs(table, compression, compress_below)
    narrowed = {f.name for f in table.schema if STORED_DTYPE in (f.metadata or {})}
    keep = {name for name in narrowed if codecs[name] != "none"}
    if keep != narrowed:
        # Only those columns widened, not the whole table built again (which was a third of a
        # one-record shard's encoding); one of over 1 GiB is built by build(keep), as
        # rows_to_table splits such a column into chunks (x 2: int32 back to int64).
        wide = sum(table.column(name).nbytes for name in narrowed - keep) * 2
        table = widen_table(table, narrowed - keep) if wide <= ONE_BUFFER_BYTES else build(keep)
    return table, codecs


def table_to_parquet_bytes(table: pa.Table, row_group_size: int | None = None,
                           compression: str = COMPRESSION, compress_below: float = COMPRESS_BELOW,
                           codecs: Mapping[str, str] | None = None, align: bool = False) -> bytes:
    """Parquet bytes of a table in row groups of at most `row_group_size` rows (None: 64), fewer
    when the rows are large (rows_per_group), column chunks compressed as `codecs` (default:
    column_codecs) says. `align`: uncompressed tensor columns laid out for reading in place
    (storage/aligned.py: a pad column before each, one page per column chunk)."""
    group_rows = rows_per_group(table, max_rows=row_group_size or ROW_GROUP_SIZE)
    codecs = dict(codecs or column_codecs(table, compression, compress_below))
    data = aligned_parquet_bytes(table, codecs, lambda t, c, pads, encodings: parquet_bytes(
        t, group_rows, compression, c, pads, ALIGNED_PAGE_BYTES, encodings), group_rows) if align else None
    return data if data is not None else parquet_bytes(table, group_rows, compression, codecs)


def parquet_bytes(table: pa.Table, group_rows: int, compression: str, codecs: Mapping[str, str],
                  unstated: Sequence[str] = (), page_bytes: int | None = None,
                  encodings: Mapping[str, str] | None = None) -> bytes:
    """Parquet bytes of a table in row groups of exactly `group_rows` rows, each column's chunks
    compressed with codecs[name]; `unstated`: columns written without statistics; `page_bytes`:
    the data page size (None: pyarrow's 1 MiB); `encodings`: a Parquet encoding by column name
    (default: pyarrow's, PLAIN here)."""
    level = parquet_codec(compression)[1]
    # pyarrow names a list column's chunk by its leaf path, and leaves unnamed chunks uncompressed
    paths = {f.name: f.name + ".list.element" if pa.types.is_list(f.type) or
             pa.types.is_fixed_size_list(f.type) else f.name for f in table.schema}
    by_path = {paths[name]: codec for name, codec in codecs.items()}
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=group_rows, compression=by_path,
                   compression_level=None if level is None else
                   {c: level for c, codec in by_path.items() if codec != "none"} or None,
                   use_dictionary=[c for c in ("sample_id", "source", "domain") if c in table.column_names],
                   write_statistics=[p for n, p in paths.items() if n not in unstated] if unstated else True,
                   **({"data_page_size": page_bytes} if page_bytes else {}),
                   **({"column_encoding": dict(encodings)} if encodings else {}))
    return sink.getvalue()


def shard_done(uri: str, name: str) -> bool:
    fs, root = resolve(uri)
    return fs.exists(join(root, f"shards/{name}.files.parquet"))


def write_shard(uri: str, rows: Sequence[Mapping[str, Any]], infos: Mapping[str, ColumnInfo] | None = None,
                row_group_size: int | None = None, *, name: str | None = None,
                files: Sequence[Mapping[str, Any]] | None = None, compression: str = COMPRESSION,
                narrow: bool = NARROW, compress_below: float = COMPRESS_BELOW,
                geometry: Sequence[str] = (), align: bool = ALIGN,
                parts: Sequence[pa.Table] | None = None, sidecar: pa.Table | None = None) -> dict[str, Any]:
    """Write one shard: its samples (`rows`, in file order) and its per-file sidecar.

    `name`: the pipeline passes the hash of the shard's inputs; by default the hash of its
    sample ids. `files`: one mapping per raw file with file, file_key, size, mtime_ns, samples
    (row count) and errors (a list of error dicts); by default one per row, from `source`.
    `parts`, instead of `rows` (then `name` and `files` are needed): the samples as Arrow tables
    in the stored layout, in order (storage/concat.py: rows copied from an old shard, new rows),
    written as the same rows given as `rows` would be.
    Returns the shard's manifest entry. Safe from many processes at once: names are unique per
    input and each file is written atomically. `compression`, `compress_below`, `narrow`, `align`:
    see table_to_parquet_bytes and storage/arrays.py rows_to_table; a reader needs none of them.
    """
    if parts is not None and (name is None or files is None):
        raise ValueError("write_shard: `parts` need the shard's `name` and `files`")
    if name is None:
        name = hashlib.sha256("\n".join(r["sample_id"] for r in rows).encode()).hexdigest()[:24]
    if files is None:
        files = [{"file": r["source"], "file_key": r["sample_id"], "record": -1, "key": r["sample_id"],
                  "samples": 1} for r in rows]
    fs, root = resolve(uri)
    encoded = encode_shard(rows, parts, infos, compression, compress_below, narrow)
    entry: dict[str, Any] = {"name": name, "path": None, "rows": encoded[0].num_rows if encoded else 0, "bytes": 0,
                             "files": len(files), "first_file": files[0]["file"] if files else None,
                             "first_record": files[0].get("record", -1) if files else -1,
                             "columns": {}, "stats": {}, "geometry": sorted(set(geometry)),
                             "errors": [e for f in files for e in (f.get("errors") or [])]}
    if encoded:
        table, codecs, infos, stats = encoded
        data = table_to_parquet_bytes(table, row_group_size, compression, codecs=codecs, align=align)
        # sha256 of the bytes: names hash the inputs, this says what is in the file (the
        # loader's decoded cache is keyed by it)
        entry.update(path=f"shards/{name}.parquet", bytes=len(data),
                     sha256=hashlib.sha256(data).hexdigest(),
                     columns={k: v.to_json() for k, v in infos.items()}, stats=stats)
        write_bytes_atomic(fs, join(root, entry["path"]), data)
    meta = {b"gdl.shard": json.dumps({k: v for k, v in entry.items() if k != "name"}).encode()}
    write_bytes_atomic(fs, join(root, f"shards/{name}.files.parquet"),
                       table_to_parquet_bytes((sidecar or sidecar_table(name, files)).replace_schema_metadata(meta)))
    return entry


def sidecar_table(name: str, files: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A shard's index (module docstring), built column by column: a row dict per file through
    from_pylist costs ~8 us a file, most of a 256-record shard's sidecar."""
    columns = {k: [f.get(k) for f in files] for k in FILES_SCHEMA.names if k not in ("errors", "shard")}
    columns.update(shard=[name] * len(files), errors=[json.dumps(list(f.get("errors") or [])) for f in files])
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) for f in FILES_SCHEMA], schema=FILES_SCHEMA)


def encode_shard(rows: Sequence[Mapping[str, Any]], parts: Sequence[pa.Table] | None,
                 infos: Mapping[str, ColumnInfo] | None, compression: str, compress_below: float,
                 narrow: bool) -> tuple[pa.Table, dict[str, str], dict[str, ColumnInfo], dict[str, Any]] | None:
    """(table, codecs, layout, statistics) of a shard's samples given as rows or as parts
    (write_shard); None when there are none."""
    if parts is not None:
        joined = join_parts(parts)
        if not joined.rows:
            return None
        table, codecs = encode_table(lambda keep: joined_table(joined, keep), compression, compress_below, narrow)
        return table, codecs, joined.infos, joined_stats(joined)
    if not rows:
        return None
    infos = dict(infos) if infos is not None else infer_infos(rows)
    table, codecs = encode_rows(rows, infos, compression, compress_below, narrow)
    return table, codecs, infos, {k: column_stats(r.get(k) for r in rows) for k in infos}


def read_shard_entry(uri: str, name: str) -> dict[str, Any]:
    """The manifest entry of a finished shard, from its sidecar's metadata."""
    fs, root = resolve(uri)
    with fs.open(join(root, f"shards/{name}.files.parquet"), "rb") as fh:
        meta = pq.read_schema(fh).metadata
    return {"name": name, **json.loads(meta[b"gdl.shard"])}


def read_shard_files(uri: str, name: str) -> list[dict[str, Any]]:
    fs, root = resolve(uri)
    with fs.open(join(root, f"shards/{name}.files.parquet"), "rb") as fh:
        rows = pq.read_table(fh).to_pylist()
    for r in rows:
        r["errors"] = json.loads(r["errors"] or "[]")
    return rows


def _write_errors(uri: str, name: str, errors: list[Mapping[str, Any]]) -> str:
    path = f"errors/{name}.parquet"
    fs, root = resolve(uri)
    table = pa.Table.from_pylist([{k: e.get(k) for k in ERRORS_SCHEMA.names} for e in errors], schema=ERRORS_SCHEMA)
    write_bytes_atomic(fs, join(root, path), table_to_parquet_bytes(table))
    return path


def commit_version(uri: str, shards: Sequence[Mapping[str, Any]], errors: Sequence[Mapping[str, Any]],
                   extra: Mapping[str, Any] | None = None, items: pa.Table | None = None) -> dict[str, Any]:
    """Publish a new version made of finished shards (whole manifest entries) and its errors.

    Writes one errors table and one manifest; shards are referenced, never rewritten. The shared
    rows the shards reference (their entries' `geometry` keys) are listed under `geometry`, and
    their columns join the version's columns. `items`: the shards' sidecar rows in shard order,
    written as the version's items index (storage/items_index.py) for the next run's planning.
    """
    geometry, shared = geometry_manifest(uri, (k for s in shards for k in s.get("geometry") or ()))
    columns = {name: {k: v for k, v in info.items() if k != "stats"} for name, info in shared.items()}
    stats: dict[str, Any] = {name: info["stats"] for name, info in shared.items()}
    for shard in shards:
        for name, info in shard["columns"].items():
            if name in columns and columns[name] != info:
                raise TypeError(f"column '{name}' differs between shards: {columns[name]} vs {info}")
            columns[name] = info
        for name, st in shard.get("stats", {}).items():
            stats[name] = merge_stats(stats.get(name), st)
    versions = list_versions(uri)
    version = (versions[-1] + 1) if versions else 1
    manifest = {
        "format": FORMAT,
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sample_count": sum(s["rows"] for s in shards),
        "error_count": len(errors),
        "columns": {name: {**info, "stats": stats.get(name)} for name, info in columns.items()},
        "shards": [{k: s[k] for k in ("name", "path", "rows", "bytes", "files", "first_file", "first_record", "sha256")
                    if k in s} for s in shards],
        "errors": _write_errors(uri, f"{version:06d}", list(errors)),
        **({"geometry": geometry} if geometry["files"] else {}),
        **({"items_index": write_items_index(uri, version, items, shards)} if items is not None else {}),
        **dict(extra or {}),
    }
    publish_manifest(uri, manifest)
    return manifest
