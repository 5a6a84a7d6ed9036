"""Keeping the last N versions and deleting the shards (and shared geometry files) no kept version references."""
from __future__ import annotations

import json

from storage.fs import join, read_bytes, resolve
from storage.manifest import list_versions, version_path


def prune_versions(uri: str, keep: int) -> list[int]:
    """Delete all but the newest `keep` versions, then unreferenced shard and errors files.

    Call it while holding the dataset's lock (no writer is staging shards meanwhile).
    Returns the versions deleted.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the current version), got {keep}")
    fs, root = resolve(uri)
    versions = list_versions(uri)
    dropped, kept = versions[:-keep], versions[-keep:]
    referenced: set[str] = set()
    for v in kept:
        m = json.loads(read_bytes(fs, version_path(root, v)))
        referenced.add(m["errors"])
        for s in m["shards"]:
            referenced.add(f"shards/{s['name']}.files.parquet")
            if s["path"]:
                referenced.add(s["path"])
        referenced.update(g["path"] for g in m.get("geometry", {}).get("files", []))
    for v in dropped:
        fs.rm(version_path(root, v))
    for folder in ("shards", "errors", "geometry"):
        if not fs.exists(join(root, folder)):
            continue
        for path in fs.ls(join(root, folder), detail=False):
            rel = f"{folder}/{path.rstrip('/').rsplit('/', 1)[-1]}"
            if rel not in referenced and not rel.rsplit("/", 1)[-1].startswith("."):
                fs.rm(path)
    return dropped
