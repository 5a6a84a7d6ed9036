"""The manifest: the one small JSON document that makes a version of a dataset visible.

Layout of a dataset folder / URI::

    manifest.json            the current version's manifest (replaced atomically on commit)
    versions/000003.json     every kept version's manifest
    shards/<hash>.parquet    immutable Parquet shards, named by content hash, shared by versions
    index/<hash>.parquet     per-sample index of a version: sample_id, source, shard, row
    errors/<hash>.parquet    errors table of a version: source, stage, error, message, traceback

A version is published by writing its JSON under versions/ and then replacing manifest.json;
a reader that loads manifest.json therefore sees one complete version, never a mix.
"""
from __future__ import annotations

import json
from typing import Any

from storage.fs import join, read_bytes, resolve, write_bytes_atomic

FORMAT = "gdl-data/1"
MANIFEST = "manifest.json"


def version_path(root: str, version: int) -> str:
    return join(root, "versions", f"{version:06d}.json")


def load_manifest(uri: str, version: int | None = None) -> dict[str, Any]:
    fs, root = resolve(uri)
    path = join(root, MANIFEST) if version is None else version_path(root, version)
    if not fs.exists(path):
        what = "no dataset" if version is None else f"no version {version}"
        raise FileNotFoundError(f"{uri}: {what} here (missing {path})")
    manifest = json.loads(read_bytes(fs, path))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{uri}: unknown dataset format {manifest.get('format')!r}; expected {FORMAT}")
    return manifest


def publish_manifest(uri: str, manifest: dict[str, Any]) -> None:
    """Write versions/<n>.json, then atomically make it the current manifest.json."""
    fs, root = resolve(uri)
    data = json.dumps(manifest, indent=2, sort_keys=False).encode()
    write_bytes_atomic(fs, version_path(root, manifest["version"]), data)
    write_bytes_atomic(fs, join(root, MANIFEST), data)


def list_versions(uri: str) -> list[int]:
    fs, root = resolve(uri)
    folder = join(root, "versions")
    if not fs.exists(folder):
        return []
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)]
    return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())
