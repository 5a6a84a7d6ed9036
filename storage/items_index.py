"""A version's items index: every shard's sidecar rows and entry, in one file.

Planning a re-run needs one row per item of the current version (FILES_SCHEMA: its file, record,
byte span, content key, samples, errors) and each shard's whole entry (columns, stats, errors).
The sidecars (`shards/<name>.files.parquet`, storage/writer.py) hold exactly that, one file per
shard; reading 24 of them took 11 ms of a 6,000-record re-run whose whole budget is ~80 ms. So
the commit also writes their concatenation, in the manifest's shard order, as one Arrow IPC file
(`items/<version>.arrow`), named by the manifest's `items_index`. LZ4: for 6,000 records 0.53 MB
instead of 1.2 (paths and hex keys repeat), read in 0.5 ms instead of 0.02, written in 0.5 ms
either way; at 10^6 records it is ~90 MB a version, and planning reads one file, not 4,000. It is derived data: a version without one (older
datasets, a missing or unreadable file) is planned from the sidecars, which stay the record of
what each shard holds.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import pyarrow as pa

from storage.fs import join, read_bytes, resolve, write_bytes_atomic

FOLDER = "items"
_META = b"gdl.shards"


def index_path(version: int) -> str:
    return f"{FOLDER}/{version:06d}.arrow"


def write_items_index(uri: str, version: int, rows: pa.Table, shards: Sequence[Mapping[str, Any]]) -> str:
    """Write `rows` (the version's sidecar rows, in shard order) with the shards' whole entries;
    returns its path relative to the dataset root."""
    fs, root = resolve(uri)
    path = index_path(version)
    table = rows.replace_schema_metadata({_META: json.dumps(list(shards)).encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
        writer.write_table(table)
    # Not fsync'ed: a crash that leaves it short makes planning read the sidecars instead.
    write_bytes_atomic(fs, join(root, path), sink.getvalue().to_pybytes(), durable=False)
    return path


def read_items_index(uri: str, manifest: Mapping[str, Any]) -> tuple[list[dict[str, Any]], pa.Table] | None:
    """(the shards' whole entries, their rows) from the version's index; None when the version
    has none or it cannot be read, or it does not list the manifest's shards (then plan from
    the sidecars)."""
    path = manifest.get("items_index")
    if not path:
        return None
    fs, root = resolve(uri)
    try:
        table = pa.ipc.open_file(pa.BufferReader(read_bytes(fs, join(root, path)))).read_all()
        shards = json.loads(table.schema.metadata[_META])
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        return None
    if [s["name"] for s in shards] != [s["name"] for s in manifest["shards"]]:
        return None
    return shards, table.replace_schema_metadata(None)
