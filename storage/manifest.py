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
import warnings
from typing import Any

from storage.fs import join, read_bytes, resolve, write_bytes_atomic

FORMAT = "gdl-data/1"
MANIFEST = "manifest.json"


def version_path(root: str, version: int) -> str:
    return join(root, "versions", f"{version:06d}.json")


class CorruptManifest(ValueError):
    """A manifest file is not a complete JSON document of this format."""


def _read_manifest(fs, uri: str, path: str) -> dict[str, Any]:
    try:
        manifest = json.loads(read_bytes(fs, path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptManifest(f"{path} is not valid JSON ({exc}): the file is truncated or "
                              f"overwritten") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        what = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CorruptManifest(f"{uri}: unknown dataset format {what!r} in {path}; expected {FORMAT}")
    return manifest


def load_manifest(uri: str, version: int | None = None) -> dict[str, Any]:
    """The current manifest (or `version`'s). A corrupt manifest.json (a disk that filled up
    or a copy cut short) is recovered from the newest intact versions/N.json, which every
    commit writes first, with a warning naming both files; `gdl preprocess` then rewrites it."""
    fs, root = resolve(uri)
    path = join(root, MANIFEST) if version is None else version_path(root, version)
    if not fs.exists(path):
        what = "no dataset" if version is None else f"no version {version}"
        raise FileNotFoundError(f"{uri}: {what} here (missing {path})")
    try:
        return _read_manifest(fs, uri, path)
    except CorruptManifest as exc:
        if version is not None:
            raise
        recovered = latest_intact_version(uri)
        if recovered is None:
            raise CorruptManifest(f"{exc}; no intact versions/*.json to recover from. Delete {path} "
                                  f"and re-run gdl preprocess to rebuild the dataset") from None
        warnings.warn(f"{exc}; reading version {recovered['version']} from "
                      f"{version_path(root, recovered['version'])} instead (the next gdl preprocess "
                      f"rewrites {path})", stacklevel=2)
        return recovered


def latest_intact_version(uri: str) -> dict[str, Any] | None:
    """The newest versions/N.json that parses, or None."""
    fs, root = resolve(uri)
    for v in reversed(list_versions(uri)):
        try:
            return _read_manifest(fs, uri, version_path(root, v))
        except CorruptManifest:
            continue
    return None


def repair_manifest(uri: str) -> int | None:
    """Rewrite a corrupt or missing manifest.json from the newest intact version (hold the
    dataset's lock). Returns the version restored, or None when nothing needed repair."""
    fs, root = resolve(uri)
    path = join(root, MANIFEST)
    if fs.exists(path):
        try:
            _read_manifest(fs, uri, path)
            return None
        except CorruptManifest:
            pass
    recovered = latest_intact_version(uri)
    if recovered is None:
        return None
    write_bytes_atomic(fs, path, json.dumps(recovered, indent=2, sort_keys=False).encode())
    return recovered["version"]


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
