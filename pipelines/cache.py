"""Planning a run against the dataset's current version: compute only what changed.

Identity of work (issue 4):
* a raw file is known by `file_key`, the SHA-256 of its bytes (re-hashed only when its size or
  mtime changed since the last run);
* an op's *recipe* is the hash of its name, code version, parameters, the reader recipe and the
  recipes of the ops it `depends_on`. A version's shards all share the version's recipes.

Decisions, per raw file:
* unchanged file, same recipes          -> its whole old shard is reused when all its files are;
* unchanged file, some recipes changed  -> recompute just those ops, copy the others' columns;
* new or edited file                    -> compute everything;
* file gone                             -> not in the new version.
New shards are named by the hash of their inputs, so a killed run's finished shards are found
and reused by the next run (resume), giving the same bytes as an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import fsspec
import pyarrow.dataset as pads

from gdl_data.ops import get_op
from gdl_data.ops.registry import params_dict
from gdl_data.readers import READERS_VERSION
from pipelines.spec import PipelineSpec
from storage import load_manifest
from storage.fs import join, resolve

FORMAT_SALT = "gdl-shard/1"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def recipe_keys(spec: PipelineSpec, labels: Mapping[str, Any] | None = None) -> dict[str, str]:
    """{"read": key, op name: key, ...}; an op's key chains on the keys of its dependencies."""
    keys = {"read": _hash({"domain": spec.domain, "readers": READERS_VERSION, "labels": labels})}
    names = [s.name for s in spec.ops]
    for step in spec.ops:
        op = get_op(step.name)
        deps = {d: keys[d] for d in op.depends_on if d in names and d in keys}
        keys[step.name] = _hash({"op": step.name, "version": op.version, "params": params_dict(step.params),
                                 "read": keys["read"], "deps": deps})
    return keys


@dataclass(frozen=True)
class FileState:
    file: str
    size: int
    mtime_ns: int
    file_key: str = ""


@dataclass(frozen=True)
class Reuse:
    """Copy the columns of `ops` for a file's samples from an old shard instead of computing them."""

    dataset: str
    shard_path: str
    row_start: int
    rows: int
    ops: tuple[str, ...]


@dataclass(frozen=True)
class ShardPlan:
    name: str
    files: tuple[FileState, ...]
    reuse: tuple[Reuse | None, ...] = ()
    done: bool = False          # finished by an earlier (possibly killed) run: nothing to compute


@dataclass
class RunPlan:
    recipes: dict[str, str]
    kept: list[dict[str, Any]] = field(default_factory=list)    # old shard entries reused as is
    todo: list[ShardPlan] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    previous_version: int | None = None
    reused_files: int = 0

    @property
    def file_count(self) -> int:
        return self.reused_files + sum(len(s.files) for s in self.todo)


def stat_files(paths: Sequence[str]) -> list[FileState]:
    def one(path: str) -> FileState:
        fs, p = fsspec.core.url_to_fs(path)
        info = fs.info(p)
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
        mtime_ns = int(mtime.timestamp() * 1e9) if hasattr(mtime, "timestamp") else int(float(mtime) * 1e9)
        return FileState(path, int(info.get("size") or 0), mtime_ns)
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, paths))


def hash_file(path: str) -> str:
    h = hashlib.sha256()
    with fsspec.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:32]


def previous_files(uri: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The current manifest (None for a new dataset) and one row per raw file of its shards."""
    try:
        manifest = load_manifest(uri)
    except FileNotFoundError:
        return None, []
    fs, root = resolve(uri)
    paths = [join(root, f"shards/{s['name']}.files.parquet") for s in manifest["shards"]]
    if not paths:
        return manifest, []
    table = pads.dataset(paths, format="parquet", filesystem=fs).to_table(
        columns=["shard", "file", "file_key", "size", "mtime_ns", "samples", "errors"])
    entries = {s["name"]: s for s in manifest["shards"]}
    rows = table.to_pylist()
    for r in rows:
        r["shard"] = entries[r["shard"]]
    return manifest, rows


def plan_run(spec: PipelineSpec, files: Sequence[str], *, retry_errors: bool = False,
             labels: Mapping[str, Any] | None = None) -> RunPlan:
    """Decide what to compute for `files` given the dataset's current version."""
    recipes = recipe_keys(spec, labels)
    plan = RunPlan(recipes)
    manifest, prev_rows = previous_files(spec.output)
    plan.previous_version = manifest["version"] if manifest else None
    prev_by_file = {r["file"]: r for r in prev_rows}
    states = []
    for st in stat_files(files):
        old = prev_by_file.get(st.file)
        same = old is not None and old["size"] == st.size and old["mtime_ns"] == st.mtime_ns
        states.append(FileState(st.file, st.size, st.mtime_ns, old["file_key"] if same else hash_file(st.file)))
    current = {s.file: s for s in states}
    old_recipes = manifest.get("recipes", {}) if manifest else {}

    # Whole old shards: reused as is when every file is unchanged, still listed, and recipes match.
    placed: set[str] = set()
    if manifest and old_recipes == recipes:
        by_shard: dict[str, list[dict[str, Any]]] = {}
        for r in prev_rows:
            by_shard.setdefault(r["shard"]["name"], []).append(r)
        for entry in manifest["shards"]:
            rows = by_shard.get(entry["name"], [])
            intact = all(r["file"] in current and current[r["file"]].file_key == r["file_key"] for r in rows)
            failed = any(r["errors"] != "[]" for r in rows)
            if rows and intact and not (retry_errors and failed):
                plan.kept.append(entry)
                placed.update(r["file"] for r in rows)
                plan.reused_files += len(rows)

    # Everything else goes into new shards, named by their inputs.
    rest = [s for s in states if s.file not in placed]
    keep_ops = tuple(n for n, k in recipes.items() if n != "read" and old_recipes.get(n) == k)
    offsets = _row_offsets(prev_rows)
    for i in range(0, len(rest), spec.shard_size):
        chunk = tuple(rest[i:i + spec.shard_size])
        reuse = []
        for st in chunk:
            old = prev_by_file.get(st.file)
            ok = (old is not None and old["file_key"] == st.file_key and keep_ops and old["shard"]["path"]
                  and old_recipes.get("read") == recipes["read"])
            reuse.append(Reuse(spec.output, old["shard"]["path"], offsets[st.file], old["samples"], keep_ops)
                         if ok else None)
        inputs = {"salt": FORMAT_SALT, "recipes": recipes, "files": [(s.file, s.file_key) for s in chunk]}
        if retry_errors and any(prev_by_file.get(s.file, {}).get("errors", "[]") != "[]" for s in chunk):
            # A new name, so the retry is computed (not resumed) and older versions stay intact.
            inputs["retry_after_version"] = plan.previous_version
        name = _hash(inputs)
        plan.todo.append(ShardPlan(name, chunk, tuple(reuse)))
    return plan


def _row_offsets(prev_rows: list[dict[str, Any]]) -> dict[str, int]:
    """Row of each file's first sample inside its old shard."""
    out, running = {}, {}
    for r in prev_rows:
        name = r["shard"]["name"]
        out[r["file"]] = running.get(name, 0)
        running[name] = running.get(name, 0) + r["samples"]
    return out
