"""Writing a new version of a dataset: shards, index, errors table, then one atomic publish."""
from __future__ import annotations

import hashlib
import io
import time
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from storage.arrays import ColumnInfo, infer_infos, rows_to_table
from storage.fs import join, resolve, write_bytes_atomic
from storage.manifest import FORMAT, list_versions, publish_manifest
from storage.stats import column_stats, merge_stats

ERRORS_SCHEMA = pa.schema([
    ("source", pa.string()), ("sample_id", pa.string()), ("stage", pa.string()),
    ("error", pa.string()), ("message", pa.string()), ("traceback", pa.string()),
])
INDEX_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("source", pa.string()), ("shard", pa.string()), ("row", pa.int64()),
])
# Row groups of 64 samples: small enough for a shuffle buffer and worker split, big enough that
# per-group overhead vanishes (see bench/RESULTS.md).
ROW_GROUP_SIZE = 64


def table_to_parquet_bytes(table: pa.Table, row_group_size: int = ROW_GROUP_SIZE) -> bytes:
    sink = io.BytesIO()
    # Float arrays compress poorly and decompression costs read time; binary arrays are stored plain.
    pq.write_table(table, sink, row_group_size=row_group_size, compression="none",
                   use_dictionary=["sample_id", "source", "domain"], write_statistics=True)
    return sink.getvalue()


def write_shard(uri: str, rows: list[Mapping[str, Any]], infos: Mapping[str, ColumnInfo] | None = None,
                row_group_size: int = ROW_GROUP_SIZE) -> dict[str, Any]:
    """Write one immutable shard, named by the hash of its bytes; returns its manifest entry.

    Safe to call from many processes at once (e.g. Dask workers): names never collide and a
    shard is written atomically, so a half-written file is never visible.
    """
    infos = dict(infos) if infos is not None else infer_infos(rows)
    data = table_to_parquet_bytes(rows_to_table(rows, infos), row_group_size)
    digest = hashlib.sha256(data).hexdigest()[:24]
    fs, root = resolve(uri)
    path = f"shards/{digest}.parquet"
    write_bytes_atomic(fs, join(root, path), data)
    return {"path": path, "rows": len(rows), "bytes": len(data),
            "sample_ids": [r["sample_id"] for r in rows], "sources": [r["source"] for r in rows],
            "columns": {k: v.to_json() for k, v in infos.items()},
            "stats": {k: column_stats(r.get(k) for r in rows) for k in infos}}


def _write_table(uri: str, folder: str, table: pa.Table) -> str:
    data = table_to_parquet_bytes(table)
    path = f"{folder}/{hashlib.sha256(data).hexdigest()[:24]}.parquet"
    fs, root = resolve(uri)
    write_bytes_atomic(fs, join(root, path), data)
    return path


def commit_version(uri: str, shards: list[dict[str, Any]], errors: Iterable[Mapping[str, Any]],
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Publish a new version made of already-written shards plus an errors table."""
    columns: dict[str, dict[str, Any]] = {}
    stats: dict[str, Any] = {}
    index_rows = {"sample_id": [], "source": [], "shard": [], "row": []}
    for shard in shards:
        for name, info in shard["columns"].items():
            if name in columns and columns[name] != info:
                raise TypeError(f"column '{name}' differs between shards: {columns[name]} vs {info}")
            columns[name] = info
        for name, st in shard.get("stats", {}).items():
            stats[name] = merge_stats(stats.get(name), st)
        for row, (sid, src) in enumerate(zip(shard["sample_ids"], shard["sources"])):
            index_rows["sample_id"].append(sid)
            index_rows["source"].append(src)
            index_rows["shard"].append(shard["path"])
            index_rows["row"].append(row)
    error_rows = [{k: e.get(k) for k in ERRORS_SCHEMA.names} for e in errors]
    versions = list_versions(uri)
    version = (versions[-1] + 1) if versions else 1
    manifest = {
        "format": FORMAT,
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sample_count": len(index_rows["sample_id"]),
        "error_count": len(error_rows),
        "columns": {name: {**info, "stats": stats.get(name)} for name, info in columns.items()},
        "shards": [{k: s[k] for k in ("path", "rows", "bytes")} for s in shards],
        "index": _write_table(uri, "index", pa.Table.from_pydict(index_rows, schema=INDEX_SCHEMA)),
        "errors": _write_table(uri, "errors", pa.Table.from_pylist(error_rows, schema=ERRORS_SCHEMA)),
        **dict(extra or {}),
    }
    publish_manifest(uri, manifest)
    return manifest
