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
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from storage.arrays import ColumnInfo, infer_infos, rows_to_table
from storage.fs import join, resolve, write_bytes_atomic
from storage.geometry import geometry_manifest
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


def rows_per_group(table: pa.Table, max_rows: int = ROW_GROUP_SIZE,
                   max_bytes: int = ROW_GROUP_BYTES) -> int:
    """Rows per row group for this table: max_rows, fewer when its rows average over
    max_bytes / max_rows bytes; at least one."""
    if table.num_rows == 0:
        return max_rows
    return max(1, min(max_rows, max_bytes * table.num_rows // max(table.nbytes, 1)))


def table_to_parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    """Parquet bytes of a table in row groups of at most `row_group_size` rows (None: 64), fewer
    when the rows are large (rows_per_group)."""
    row_group_size = rows_per_group(table, max_rows=row_group_size or ROW_GROUP_SIZE)
    sink = io.BytesIO()
    # Float arrays compress poorly and decompression costs read time; binary arrays are stored plain.
    pq.write_table(table, sink, row_group_size=row_group_size, compression="none",
                   use_dictionary=[c for c in ("sample_id", "source", "domain") if c in table.column_names],
                   write_statistics=True)
    return sink.getvalue()


def shard_done(uri: str, name: str) -> bool:
    fs, root = resolve(uri)
    return fs.exists(join(root, f"shards/{name}.files.parquet"))


def write_shard(uri: str, rows: Sequence[Mapping[str, Any]], infos: Mapping[str, ColumnInfo] | None = None,
                row_group_size: int | None = None, *, name: str | None = None,
                files: Sequence[Mapping[str, Any]] | None = None,
                geometry: Sequence[str] = ()) -> dict[str, Any]:
    """Write one shard: its samples (`rows`, in file order) and its per-file sidecar.

    `name`: the pipeline passes the hash of the shard's inputs; by default the hash of its
    sample ids. `files`: one mapping per raw file with file, file_key, size, mtime_ns, samples
    (row count) and errors (a list of error dicts); by default one per row, from `source`.
    Returns the shard's manifest entry. Safe from many processes at once: names are unique per
    input and each file is written atomically.
    """
    if name is None:
        name = hashlib.sha256("\n".join(r["sample_id"] for r in rows).encode()).hexdigest()[:24]
    if files is None:
        files = [{"file": r["source"], "file_key": r["sample_id"], "record": -1, "key": r["sample_id"],
                  "samples": 1} for r in rows]
    fs, root = resolve(uri)
    entry: dict[str, Any] = {"name": name, "path": None, "rows": len(rows), "bytes": 0,
                             "files": len(files), "first_file": files[0]["file"] if files else None,
                             "first_record": files[0].get("record", -1) if files else -1,
                             "columns": {}, "stats": {}, "geometry": sorted(set(geometry)),
                             "errors": [e for f in files for e in (f.get("errors") or [])]}
    if rows:
        infos = dict(infos) if infos is not None else infer_infos(rows)
        data = table_to_parquet_bytes(rows_to_table(rows, infos), row_group_size)
        # sha256 of the bytes: names hash the inputs, this says what is in the file (the
        # loader's decoded cache is keyed by it)
        entry.update(path=f"shards/{name}.parquet", bytes=len(data),
                     sha256=hashlib.sha256(data).hexdigest(),
                     columns={k: v.to_json() for k, v in infos.items()},
                     stats={k: column_stats(r.get(k) for r in rows) for k in infos})
        write_bytes_atomic(fs, join(root, entry["path"]), data)
    sidecar = pa.Table.from_pylist(
        [{**{k: f.get(k) for k in FILES_SCHEMA.names if k not in ("errors", "shard")},
          "shard": name, "errors": json.dumps(list(f.get("errors") or []))} for f in files],
        schema=FILES_SCHEMA)
    meta = {b"gdl.shard": json.dumps({k: v for k, v in entry.items() if k != "name"}).encode()}
    sidecar = sidecar.replace_schema_metadata(meta)
    write_bytes_atomic(fs, join(root, f"shards/{name}.files.parquet"), table_to_parquet_bytes(sidecar))
    return entry


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
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Publish a new version made of finished shards (manifest entries) and its errors.

    Writes one errors table and one manifest; shards are referenced, never rewritten. The shared
    rows the shards reference (their entries' `geometry` keys) are listed under `geometry`, and
    their columns join the version's columns.
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
        **dict(extra or {}),
    }
    publish_manifest(uri, manifest)
    return manifest
