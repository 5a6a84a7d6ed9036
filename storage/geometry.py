"""Shared rows: arrays stored once and referenced by many sample rows through `geometry_key`.

Many samples can share one domain (1,000 maps on one HEALPix grid, every window of a traffic
table on one sensor graph). What depends only on that domain is stored once per distinct key:

    geometry/<key>.parquet   one row: `geometry_key` and the shared columns, in the shards' array
                             layout (storage/arrays.py); immutable and named by its content key
                             (written atomically), so resume, versions and pruning need nothing more

and each sample row of a shard keeps its own columns plus a `geometry_key` string column. The
file's footer metadata (`gdl.geometry`) holds its entry: key, path, bytes, column layout and
column statistics, so a commit lists a version's geometry files (manifest `geometry`) without
reading array data. Storage knows nothing of geometry: a key is any string its writer chose.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import pyarrow.parquet as pq

from storage.arrays import infer_infos, rows_to_table
from storage.fs import join, resolve, write_bytes_atomic
from storage.stats import column_stats, merge_stats

GEOMETRY_KEY = "geometry_key"
FOLDER = "geometry"


def geometry_path(key: str) -> str:
    """Path of a geometry file inside the dataset folder."""
    return f"{FOLDER}/{key}.parquet"


def geometry_exists(uri: str, key: str) -> bool:
    fs, root = resolve(uri)
    return fs.exists(join(root, geometry_path(key)))


def write_geometry(uri: str, key: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Write one shared row under `key` (atomically); returns its entry."""
    from storage.writer import table_to_parquet_bytes   # writer imports this module
    row = {GEOMETRY_KEY: key, **{k: v for k, v in row.items() if k != GEOMETRY_KEY}}
    infos = infer_infos([row])
    entry = {"key": key, "path": geometry_path(key),
             "columns": {k: v.to_json() for k, v in infos.items() if k != GEOMETRY_KEY},
             "stats": {k: column_stats([row[k]]) for k in infos if k != GEOMETRY_KEY}}
    table = rows_to_table([row], infos)
    table = table.replace_schema_metadata({b"gdl.geometry": json.dumps(entry).encode()})
    data = table_to_parquet_bytes(table)
    fs, root = resolve(uri)
    write_bytes_atomic(fs, join(root, entry["path"]), data)
    return {**entry, "bytes": len(data)}


def read_geometry_entry(uri: str, key: str) -> dict[str, Any]:
    """A geometry file's entry (key, path, bytes, columns, stats) from its footer alone."""
    fs, root = resolve(uri)
    path = join(root, geometry_path(key))
    with fs.open(path, "rb") as fh:
        meta = pq.read_schema(fh).metadata
    return {**json.loads(meta[b"gdl.geometry"]), "bytes": int(fs.size(path))}


def geometry_manifest(uri: str, keys: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the manifest's `geometry` section, {column: info with merged stats}) for `keys`.

    The section lists every file the version references (pruning keeps exactly those) and the
    columns they hold (readers join exactly those). Statistics count each distinct row once.
    """
    files, columns, stats = [], {}, {}
    for key in sorted(set(keys)):
        entry = read_geometry_entry(uri, key)
        files.append({"key": key, "path": entry["path"], "bytes": entry["bytes"]})
        for name, info in entry["columns"].items():
            if name in columns and columns[name] != info:
                raise TypeError(f"geometry column '{name}' differs between files: {columns[name]} vs {info}")
            columns[name] = info
            stats[name] = merge_stats(stats.get(name), entry["stats"].get(name))
    section = {"files": files, "columns": sorted(columns)}
    return section, {name: {**info, "stats": stats.get(name)} for name, info in columns.items()}
