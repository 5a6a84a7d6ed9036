"""Keeping the last N versions and deleting the files only dropped versions used.

What may be deleted: only files the dataset's own history names. That is the shard, sidecar
and errors files listed by a dropped version's manifest, plus the files an interrupted run
left, recognised by the names gdl gives (`shards/<hex hash>.parquet`,
`shards/<hex hash>.files.parquet`, `errors/<6 digits>.parquet`, `geometry/<hex hash>.parquet`:
the rows shared by the samples on one domain, storage/geometry.py; `items/<6 digits>.arrow`:
a version's items index, storage/items_index.py). Any other file in the
folder (a user's notes, a copy, a file of another tool) is never touched.

Readers are not broken by pruning: a reader holds the manifest of the version it opened and
reads its shards for as long as it runs (`open_dataset`, `GeometryStream`). So a dropped
version's files are kept for a grace period after that version stopped being among the kept
ones (default one hour, `GDL_PRUNE_GRACE_SECONDS`): its manifest moves to
`versions/retired/N.json`, stamped with the time, and its files go at the first commit after
the grace period ends. A reader that runs longer than that should pin a version that stays
kept (`keep_versions`) or raise the grace period.
"""
from __future__ import annotations

import json
import os
import re
import time

from storage.fs import join, read_bytes, resolve, write_bytes_atomic
from storage.manifest import list_versions, version_path

GRACE_ENV = "GDL_PRUNE_GRACE_SECONDS"
DEFAULT_GRACE_SECONDS = 3600.0
# Names only gdl gives (storage/writer.py): content or input hashes, version numbers.
_GDL_NAMES = {"shards": re.compile(r"^[0-9a-f]{16,64}(\.files)?\.parquet$"),
              "errors": re.compile(r"^([0-9]{6}|[0-9a-f]{16,64})\.parquet$"),
              "geometry": re.compile(r"^[0-9a-f]{16,64}\.parquet$"),
              "items": re.compile(r"^[0-9]{6}\.arrow$")}


def grace_seconds() -> float:
    value = os.environ.get(GRACE_ENV)
    return DEFAULT_GRACE_SECONDS if value in (None, "") else max(0.0, float(value))


def version_files(manifest: dict) -> set[str]:
    """The files (relative paths) one version's manifest uses."""
    files = {manifest["errors"]}
    if manifest.get("items_index"):
        files.add(manifest["items_index"])
    for s in manifest["shards"]:
        files.add(f"shards/{s['name']}.files.parquet")
        if s["path"]:
            files.add(s["path"])
    files.update(g["path"] for g in manifest.get("geometry", {}).get("files", []))
    return files


def prune_versions(uri: str, keep: int, grace: float | None = None) -> list[int]:
    """Retire all but the newest `keep` versions; delete files only versions retired more than
    `grace` seconds ago used (None: `grace_seconds()`), and orphans of interrupted runs.

    Call it while holding the dataset's lock (no writer is staging shards meanwhile).
    Returns the versions retired now.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the current version), got {keep}")
    grace = grace_seconds() if grace is None else grace
    fs, root = resolve(uri)
    versions = list_versions(uri)
    dropped, kept = versions[:-keep], versions[-keep:]
    referenced: set[str] = set()
    for v in kept:
        referenced |= version_files(json.loads(read_bytes(fs, version_path(root, v))))
    now = time.time()
    for v in dropped:   # the record is written before the version file goes: never lost
        manifest = json.loads(read_bytes(fs, version_path(root, v)))
        record = {"version": v, "retired_at": now, "files": sorted(version_files(manifest))}
        write_bytes_atomic(fs, _retired_path(root, v), json.dumps(record).encode())
        fs.rm(version_path(root, v))
    listed, expired = _retired_files(fs, root, now, grace, referenced)
    _delete_unreferenced(fs, root, referenced, listed)
    for path in expired:
        fs.rm(path)
    return dropped


def _retired_path(root: str, version: int) -> str:
    return join(root, "versions", "retired", f"{version:06d}.json")


def _retired_files(fs, root: str, now: float, grace: float, referenced: set[str]) -> tuple[set[str], list[str]]:
    """Files retired versions list (all of them: gdl's), and the records whose grace ended.
    Files of versions still within their grace are added to `referenced`."""
    folder = join(root, "versions", "retired")
    listed: set[str] = set()
    expired: list[str] = []
    if not fs.exists(folder):
        return listed, expired
    for path in fs.ls(folder, detail=False):
        if not path.endswith(".json"):
            continue
        record = json.loads(read_bytes(fs, path))
        listed |= set(record["files"])
        if now - record["retired_at"] < grace:
            referenced |= set(record["files"])
        else:
            expired.append(path)
    return listed, expired


def _delete_unreferenced(fs, root: str, referenced: set[str], listed: set[str]) -> None:
    for folder, pattern in _GDL_NAMES.items():
        if not fs.exists(join(root, folder)):
            continue
        for path in fs.ls(join(root, folder), detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            rel = f"{folder}/{name}"
            if rel not in referenced and (rel in listed or pattern.match(name)):
                fs.rm(path)
