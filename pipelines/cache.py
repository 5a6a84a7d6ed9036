"""Planning a run against the dataset's current version: compute only what changed.

The unit of work and of caching is the *item*: a whole raw file, or one record of a multi-record
file (an SDF record, an XYZ frame; gdl_data/readers/__init__.py `register_records`).

Identity of work:
* a raw file is known by `file_key`, the SHA-256 of its bytes (re-hashed, and re-split into
  records, only when its size or mtime changed since the last run); for a file split into
  records, the SHA-256 of its record blocks' digests (pipelines/record_blocks.py: a hash list
  over the same bytes, so that a changed file is re-hashed only around what changed);
* an item is known by `key`: the file_key for a whole file, the hash of the record's own bytes
  for a record (that is its sample id), so appending, editing or removing one record of a
  100,000-record file changes one key;
* an op's *recipe* is the hash of its name, code version, parameters, the reader recipe and the
  recipes of the ops it `depends_on`. A version's shards all share the version's recipes.

What the current version holds comes from its items index (storage/items_index.py: one file,
with each item's span and block digests as the last run found them), else its shard sidecars.

Steps (plan_run): the current items -> whole old shards kept as they are -> the rest grouped
into new shards, each item with what it can copy from an old shard:
* an old shard whose every item is unchanged and still at the same place is kept whole;
* an item whose key is known from an old shard copies the columns of the ops whose recipes did
  not change (all of them, and the reader's, when nothing changed: a moved record is a copy);
* a new or edited item is computed.
New shards are named by the hash of their inputs, so a killed run's finished shards are found
and reused by the next run (resume), giving the same bytes as an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import fsspec
from fsspec.implementations.local import LocalFileSystem
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gdl_data.ops import get_op
from gdl_data.ops.registry import params_dict
from gdl_data.readers import READERS_VERSION, companion_files, record_salt, record_splitter, record_start_test
from gdl_data.readers.validate import TimeLimitExceeded, file_time_limit, not_a_regular_file, with_time_limit
from pipelines.geometry import GEOMETRY_SALT, spec_shares
from pipelines.record_blocks import BLOCK_RECORDS, Records, split_records
from pipelines.sources import file_state, hash_file
from pipelines.spec import PipelineSpec
from storage import load_manifest
from storage.arrays import to_numpy
from storage.fs import join, read_bytes, resolve
from storage.items_index import read_items_index
from storage.writer import FILES_SCHEMA

FORMAT_SALT = "gdl-shard/2"      # 2: items (records) as the unit of work
SHARD_BYTES = 64 << 20           # at most this much raw input per shard, whatever shard_size says
ITEM_COLUMNS = ("file", "file_key", "size", "mtime_ns", "record", "start", "stop", "key")
ITEM_TYPES = (pa.string(), pa.string(), pa.int64(), pa.int64(), pa.int64(), pa.int64(), pa.int64(),
              pa.string())
WHOLE_FILE = -1                  # `record` of an item that is a whole file
# Up to this many files are stat'ed one after another: a thread pool's start and join cost a
# one-file re-run more (1-2 ms in a forked warm child) than the stats it would overlap.
STAT_INLINE = 16
# A split file's block digests (pipelines/record_blocks.py), on the first record of each block;
# kept per version in the items index, null elsewhere and in sidecars.
BLOCK_COLUMN = "block_digest"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def recipe_keys(spec: PipelineSpec, labels: Mapping[str, Any] | None = None) -> dict[str, str]:
    """{"read": key, op name: key, ...}; an op's key chains on the keys of its dependencies."""
    read = {"domain": spec.domain, "readers": READERS_VERSION, "labels": labels}
    if spec.domain == "sphere" and spec.share_geometry:    # every map shares: a new layout
        read["geometry"] = GEOMETRY_SALT
    elif not spec.share_geometry:
        read["geometry"] = "per-sample"
    keys = {"read": _hash(read)}
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
class Item:
    """One unit of work: a whole file (record = -1) or the record `record` at bytes [start, stop)."""

    file: str
    file_key: str
    size: int
    mtime_ns: int
    record: int = WHOLE_FILE
    start: int = 0
    stop: int = 0
    key: str = ""

    @property
    def source(self) -> str:
        return self.file if self.record == WHOLE_FILE else f"{self.file}#{self.record}"


@dataclass(frozen=True)
class Reuse:
    """Copy the columns of `ops` for an item's samples from an old shard instead of computing them.

    `whole`: the reader's columns are copied too (the item's bytes and every recipe are
    unchanged), so the item is not even read; only its `source` is written anew.
    """

    dataset: str
    shard_path: str
    row_start: int
    rows: int
    ops: tuple[str, ...]
    whole: bool = False


@dataclass(frozen=True)
class ShardPlan:
    name: str
    items: tuple[Item, ...]
    reuse: tuple[Reuse | None, ...] = ()
    share: bool = False     # samples that share their domain store its geometry once (pipelines/geometry.py)


@dataclass
class RunPlan:
    recipes: dict[str, str]
    kept: list[dict[str, Any]] = field(default_factory=list)    # old shard entries reused as is
    todo: list[ShardPlan] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    previous_version: int | None = None
    previous_items: pa.Table | None = field(default=None, repr=False)   # its rows (previous_items)
    current_items: pa.Table | None = field(default=None, repr=False)    # what the files hold now
    file_count: int = 0
    reused_items: int = 0

    @property
    def todo_items(self) -> int:
        return sum(len(s.items) for s in self.todo)

    previous_shards: int = 0

    @property
    def changes_nothing(self) -> bool:
        """True when the run would publish exactly the current version again."""
        return self.previous_version is not None and not self.todo and len(self.kept) == self.previous_shards


def stat_files(paths: Sequence[str], domain: str | None = None) -> list[FileState]:
    """Size and mtime of each file (file_state never opens a file and copes with dangling links
    and FIFOs: pipelines/sources.py). A file with companions (a signals table's domain file and
    parameters, gdl_data/readers/signals.py) gets, as `mtime_ns`, a fingerprint of its own and
    their sizes and mtimes, so that editing a companion re-reads the file."""
    def one(path: str) -> FileState:
        size, mtime_ns = file_state(path)
        others = companion_files(path, domain) if domain else []
        if others:
            stamp = json.dumps([mtime_ns] + [[os.path.basename(c), *file_state(c)] for c in others])
            mtime_ns = int(hashlib.sha256(stamp.encode()).hexdigest()[:15], 16)
        return FileState(path, size, mtime_ns)
    if len(paths) <= STAT_INLINE:
        return [one(path) for path in paths]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, paths))


def file_items(state: FileState, domain: str, old: Records | None = None) -> list[Item] | pa.Table:
    """Hash a new or changed file; a multi-record file is also split into its records (one read,
    within the per-file time limit), given as an items table (ITEM_COLUMNS and BLOCK_COLUMN).
    `old`: the file's records in the previous version, whose unchanged blocks need no hashing
    (pipelines/record_blocks.py). A file gdl will not read (FIFO, device, dangling link) or cannot
    read in time is one whole-file item, which its reader then records as an error."""
    whole = Item(state.file, "", state.size, state.mtime_ns, stop=state.size)
    split = record_splitter(state.file, domain)
    salt = record_salt(state.file, domain)      # b"" unless the file has companions
    if split is None or not_a_regular_file(state.file.removeprefix("file://")) and "://" not in state.file:
        key = hash_file(state.file)
        key = hashlib.sha256(salt + key.encode()).hexdigest()[:32] if salt else key   # companions' too
        return [dataclasses.replace(whole, file_key=key, key=key)]
    data = _read_in_time(state)
    if data is None:
        key = hash_file(state.file)
        return [dataclasses.replace(whole, file_key=key, key=key)]
    try:
        records = _salted_records(data, split, salt) if salt else \
            split_records(data, split, old, record_start_test(state.file, domain))
    except Exception:  # noqa: BLE001 - unsplittable bytes: read whole, the reader reports why
        records = None
    if records is None:
        key = hashlib.sha256(salt + data).hexdigest()[:32]
        return [dataclasses.replace(whole, file_key=key, key=key)]
    file_key = hashlib.sha256(salt + data).hexdigest()[:32] if salt else records.file_key
    return _records_table(state, records, file_key)


def _salted_records(data: bytes, split, salt: bytes) -> Records | None:
    """Records whose keys also hash the file's companions (`salt`); no block digests."""
    spans = np.array(split(data), dtype=np.int64).reshape(-1, 2)
    if not len(spans):
        return None
    view = memoryview(data)
    return Records(len(data), spans[:, 0], spans[:, 1], [_salted(salt, view[s:e]) for s, e in spans.tolist()], [])


def _records_table(state: FileState, records: Records, file_key: str) -> pa.Table:
    """The items table of one split file, built column by column (6,000 records in 1 ms)."""
    n = len(records.keys)
    blocks = np.full(n, None, dtype=object)
    if records.digests:                      # salted records have none
        blocks[::BLOCK_RECORDS] = records.digests
    base = (state.file, file_key, state.size, state.mtime_ns)
    columns = [pa.repeat(pa.scalar(value, kind), n) for value, kind in zip(base, ITEM_TYPES)]
    columns += [pa.array(np.arange(n, dtype=np.int64)), pa.array(records.starts), pa.array(records.stops),
                pa.array(records.keys, pa.string()), pa.array(blocks, pa.string())]
    return pa.table(dict(zip(ITEM_COLUMNS + (BLOCK_COLUMN,), columns)))


def _salted(salt: bytes, record: memoryview) -> str:
    digest = hashlib.sha256(salt)
    digest.update(record)
    return digest.hexdigest()[:32]


def _read_in_time(state: FileState) -> bytes | None:
    """The file's bytes, or None when it cannot be read within the per-file time limit."""
    try:
        return with_time_limit(lambda: _read_all(state.file), file_time_limit(state.size),
                               f"reading {state.file}")
    except (TimeLimitExceeded, OSError):
        return None


def _read_all(path: str) -> bytes:
    with fsspec.open(path, "rb") as fh:
        return fh.read()


def items_table(items: Sequence[Item]) -> pa.Table:
    """Whole-file (or hand-made) items as an items table; no block digests."""
    columns = {c: [getattr(it, c) for it in items] for c in ITEM_COLUMNS}
    table = pa.table({c: pa.array(columns[c], t) for c, t in zip(ITEM_COLUMNS, ITEM_TYPES)})
    return table.append_column(BLOCK_COLUMN, pa.nulls(len(items), pa.string()))


def previous_items(uri: str) -> tuple[dict[str, Any] | None, pa.Table | None]:
    """The current manifest (None for a new dataset) and one row per item of its shards
    (shard, the item columns, samples, errors): from the version's items index, else from the
    shard sidecars (storage/items_index.py). The manifest's shard entries come back whole
    (columns, stats, errors: the sidecars' copies, which the manifest file leaves out), so that a
    commit need not read the sidecars again."""
    try:
        manifest = load_manifest(uri)
    except FileNotFoundError:
        return None, None
    if not manifest["shards"]:
        return manifest, None
    indexed = read_items_index(uri, manifest)
    if indexed is not None:
        manifest["shards"], table = indexed
        return manifest, _with_blocks(table)
    read_back = _read_sidecars(uri, [s["name"] for s in manifest["shards"]])
    manifest["shards"] = [{"name": s["name"], **json.loads(entry)} for s, (entry, _) in zip(manifest["shards"], read_back)]
    table = pa.concat_tables([t for _, t in read_back])
    filled = {"record": pc.fill_null(table["record"], WHOLE_FILE), "start": pc.fill_null(table["start"], 0),
              "stop": pc.coalesce(table["stop"], table["size"]), "key": pc.coalesce(table["key"], table["file_key"])}
    for name, column in filled.items():
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return manifest, _with_blocks(table)


def _with_blocks(table: pa.Table) -> pa.Table:
    """`table` with BLOCK_COLUMN (null when its source has none: sidecars hold no digests)."""
    if BLOCK_COLUMN in table.column_names:
        return table
    return table.append_column(BLOCK_COLUMN, pa.nulls(len(table), pa.string()))


def _read_sidecars(uri: str, names: Sequence[str]) -> list[tuple[bytes, pa.Table]]:
    """(entry JSON, rows) of each shard's sidecar. Each sidecar's bytes read whole, then parsed as
    one ParquetFile (pyarrow.dataset, which read_table uses, imports pandas: 0.2-0.6 s of every
    command's start); from an object store on 8 threads, locally one after another (threads only
    add switching: 9 ms, not 20, for 24). Sidecars written before items existed (one row per
    whole file) lack the item columns: they come back null (filled by the caller)."""
    fs, root = resolve(uri)

    def read(name: str) -> tuple[bytes, pa.Table]:
        data = read_bytes(fs, join(root, f"shards/{name}.files.parquet"))
        sidecar = pq.ParquetFile(pa.BufferReader(data))
        return sidecar.schema_arrow.metadata[b"gdl.shard"], _with_all_columns(sidecar.read(use_threads=False))
    if isinstance(fs, LocalFileSystem):
        return [read(name) for name in names]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(read, names))


def version_items(uri: str, plan: RunPlan, shards: Sequence[Mapping[str, Any]],
                  computed: Mapping[str, pa.Table] | None = None) -> pa.Table:
    """A new version's items index: the sidecar rows of its `shards`, in their order (a kept
    shard's from the previous version's rows as planning read them, a new shard's as its
    computation handed them back in `computed`, by name, else from its sidecar), with each
    item's file state, span and block digest as planning found them now (a kept shard's
    sidecar keeps those of the file version it was computed from)."""
    previous = plan.previous_items if plan.previous_items is not None else FILES_SCHEMA.empty_table()
    by_shard = _rows_by(previous, "shard") if len(previous) else {}
    computed = computed or {}
    new = [s["name"] for s in shards if s["name"] not in by_shard]
    unread = [name for name in new if name not in computed]
    read_back = dict(zip(unread, (rows for _, rows in _read_sidecars(uri, unread))))
    parts, count = [previous.select(FILES_SCHEMA.names)], len(previous)
    for name in new:                                           # numbered after the previous rows
        rows = (computed[name] if name in computed else read_back[name]).select(FILES_SCHEMA.names)
        by_shard[name] = np.arange(count, count + len(rows))
        parts.append(rows)
        count += len(rows)
    order = [by_shard[s["name"]] for s in shards]
    table = pa.concat_tables(parts).take(np.concatenate(order) if order else np.zeros(0, np.int64))
    return _exact(table.combine_chunks(), plan.current_items)


def _exact(table: pa.Table, current: pa.Table | None) -> pa.Table:
    """`table` with the columns planning knows exactly for the current items (matched by file,
    record and key) taken from `current`, and BLOCK_COLUMN (null where not matched)."""
    exact = ("file_key", "size", "mtime_ns", "start", "stop", BLOCK_COLUMN)
    if current is None or not len(table):
        return _with_blocks(table)
    where = np.arange(len(table)) if _same_items(table, current) else \
        pc.index_in(_ident(table), value_set=_ident(current))
    for name in exact:
        column = current[name].take(where)      # null where not matched
        if name != BLOCK_COLUMN:
            column = pc.coalesce(column, table[name])
            table = table.set_column(table.schema.get_field_index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table


def _with_all_columns(table: pa.Table) -> pa.Table:
    """A sidecar table with exactly FILES_SCHEMA's columns (missing ones null), no metadata."""
    if table.schema.equals(FILES_SCHEMA):          # every sidecar of this version: nothing to cast
        return table.replace_schema_metadata(None)
    for field in FILES_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(len(table), field.type))
    return table.select(FILES_SCHEMA.names).cast(FILES_SCHEMA)


def _np(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return to_numpy(column)


def current_items(stats: Sequence[FileState], prev: pa.Table | None, domain: str) -> pa.Table:
    """Every item of the listed files, in listing order: an unchanged file's items (same size and
    mtime) come from the sidecars without reading it; others are hashed and split now."""
    names = pa.array([s.file for s in stats], pa.string())
    unchanged = np.zeros(len(stats), bool)
    if prev is not None and len(stats):
        idx = _np(pc.fill_null(pc.index_in(names, value_set=prev["file"]), -1))
        j = np.where(idx >= 0, idx, 0)
        unchanged = (idx >= 0) & (_np(prev["size"])[j] == np.array([s.size for s in stats])) \
            & (_np(prev["mtime_ns"])[j] == np.array([s.mtime_ns for s in stats]))
    parts, fresh = [], []
    changed = np.flatnonzero(~unchanged)
    rows = _rows_by(prev, "file") if prev is not None and len(changed) else {}
    for i in changed:
        items = file_items(stats[i], domain, _old_records(prev, rows.get(stats[i].file)))
        if isinstance(items, pa.Table):
            parts.append(items)
        else:
            fresh += items
    parts.append(items_table(fresh))
    if unchanged.any():
        old = prev.filter(pc.is_in(prev["file"], value_set=names.filter(pa.array(unchanged))))
        parts.append(old.select([*ITEM_COLUMNS, BLOCK_COLUMN]))
    table = pa.concat_tables(parts)
    order = pc.index_in(table["file"], value_set=names)
    table = table.append_column("_order", order)
    return table.sort_by([("_order", "ascending"), ("record", "ascending")]).drop_columns(["_order"])


def _same_items(a: pa.Table, b: pa.Table) -> bool:
    """Whether two items tables list the same items in the same order (the usual case for a
    version's rows against the items planned: 3 comparisons instead of matching 6,000 strings)."""
    return len(a) == len(b) and all(a[c].equals(b[c]) for c in ("record", "key", "file"))


def _rows_by(table: pa.Table, column: str) -> dict[str, np.ndarray]:
    """Row numbers of `table` for each value of `column`, in table order."""
    codes = pc.dictionary_encode(table[column]).combine_chunks()
    indices = _np(codes.indices)
    order = np.argsort(indices, kind="stable")
    bounds = np.searchsorted(indices[order], np.arange(len(codes.dictionary) + 1))
    return {name: order[bounds[i]:bounds[i + 1]] for i, name in enumerate(codes.dictionary.to_pylist())}


def _old_records(prev: pa.Table, rows: np.ndarray | None) -> Records | None:
    """A split file's records as the previous version's items index holds them (exact spans,
    keys, block digests); None when its rows are not a complete record map with every block's
    digest (a whole file, or rows read from sidecars, whose spans may be those of older versions)."""
    if rows is None:
        return None
    table = prev.take(rows)
    record = _np(table["record"])
    order = np.argsort(record, kind="stable")
    digests = table[BLOCK_COLUMN].take(order[::BLOCK_RECORDS]).to_pylist()
    sizes = _np(table["size"])
    if not np.array_equal(record[order], np.arange(len(rows))) or None in digests \
            or table[BLOCK_COLUMN].null_count != len(rows) - len(digests) or (sizes != sizes[0]).any():
        return None
    return Records(int(sizes[0]), _np(table["start"])[order], _np(table["stop"])[order],
                   table["key"].take(order).to_pylist(), digests)


def _ident(table: pa.Table) -> pa.ChunkedArray:
    """One string per item naming its place and content: file, record, key."""
    # the separator typed: an untyped Python string takes pyarrow's path that imports pandas
    return pc.binary_join_element_wise(table["file"], pc.cast(table["record"], pa.string()), table["key"],
                                       pa.scalar("\x1f", pa.string()))


def kept_shards(prev: pa.Table, cur: pa.Table, retry_errors: bool) -> tuple[np.ndarray, np.ndarray]:
    """(names of old shards kept whole, mask over `cur` of the items they hold). A shard is kept
    when each of its items is still listed at the same place with the same key."""
    codes = pc.dictionary_encode(prev["shard"]).combine_chunks()
    shard_codes, shard_names = _np(codes.indices), _np(codes.dictionary)
    where = _np(pc.fill_null(pc.index_in(_ident(prev), value_set=_ident(cur)), -1))
    broken = np.bincount(shard_codes, weights=where < 0, minlength=len(shard_names)) > 0
    if retry_errors:
        failed = _np(prev["errors"]) != "[]"
        broken |= np.bincount(shard_codes, weights=failed, minlength=len(shard_names)) > 0
    placed = np.zeros(len(cur), bool)
    placed[where[~broken[shard_codes]]] = True
    return shard_names[~broken], placed


def reuse_sources(prev: pa.Table, manifest: Mapping[str, Any], keys: pa.Array) -> dict[str, tuple[str, int, int]]:
    """For the item `keys` to compute: key -> (old shard path, first row of its samples in that
    shard, rows), where an old shard holds that content with at least one sample."""
    samples = _np(prev["samples"]).astype(np.int64)
    codes = _np(pc.dictionary_encode(prev["shard"]).combine_chunks().indices)
    before = np.cumsum(samples) - samples
    first = np.full(codes.max() + 1, len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    row_in_shard = before - before[first[codes]]     # a shard's rows are its items' samples, in order
    wanted = np.flatnonzero(_np(pc.is_in(prev["key"], value_set=keys)) & (samples > 0))
    paths = {e["name"]: e["path"] for e in manifest["shards"]}
    shard, key = prev["shard"].take(wanted).to_pylist(), prev["key"].take(wanted).to_pylist()
    out: dict[str, tuple[str, int, int]] = {}
    for s, k, row, n in zip(shard, key, row_in_shard[wanted], samples[wanted]):
        if paths.get(s) and k not in out:
            out[k] = (paths[s], int(row), int(n))
    return out


def plan_run(spec: PipelineSpec, files: Sequence[str] | Sequence[FileState], *, retry_errors: bool = False,
             labels: Mapping[str, Any] | None = None) -> RunPlan:
    """Decide what to compute for `files` (paths, or FileStates already stat'ed) given the
    dataset's current version. Vectorised over items (Arrow/numpy), so planning a re-run over
    10^6 unchanged records takes seconds (bench/cache.py)."""
    plan = RunPlan(recipe_keys(spec, labels))
    manifest, prev = previous_items(spec.output)
    plan.previous_version = manifest["version"] if manifest else None
    plan.previous_items = prev
    plan.previous_shards = len(manifest["shards"]) if manifest else 0
    stats = list(files) if files and isinstance(files[0], FileState) else stat_files(files, spec.domain)
    plan.file_count = len(stats)
    cur = current_items(stats, prev, spec.domain)
    plan.current_items = cur
    placed = np.zeros(len(cur), bool)
    same_recipes = manifest is not None and manifest.get("recipes") == plan.recipes \
        and manifest.get("layout") == spec.layout()
    if prev is not None and same_recipes:
        names, placed = kept_shards(prev, cur, retry_errors)
        entries = {e["name"]: e for e in manifest["shards"]}
        plan.kept = [entries[n] for n in names]
        plan.reused_items = int(placed.sum())
    rest = cur.filter(pa.array(~placed))
    sources = reuse_sources(prev, manifest, rest["key"].combine_chunks()) if prev is not None and len(rest) else {}
    retry: set[str] = set()
    if retry_errors and prev is not None:
        retry = set(prev.filter(pc.not_equal(prev["errors"], pa.scalar("[]", pa.string())))["key"].to_pylist())
    plan.todo = new_shards(spec, plan, table_items(rest), sources, manifest, retry)
    return plan


def table_items(table: pa.Table) -> list[Item]:
    """The rows of an items table as Items (column by column: half the time of row dicts)."""
    return [Item(*row) for row in zip(*(table[c].to_pylist() for c in ITEM_COLUMNS))]


def new_shards(spec: PipelineSpec, plan: RunPlan, items: list[Item],
               sources: Mapping[str, tuple[str, int, int]], manifest: Mapping[str, Any] | None,
               retry: set[str] = frozenset()) -> list[ShardPlan]:
    """Group the items to compute into shards of at most `shard_size` items and SHARD_BYTES of
    raw input, each item with what it may copy from an old shard."""
    old = (manifest or {}).get("recipes", {})
    same_read = old.get("read") == plan.recipes["read"]
    keep_ops = tuple(n for n, k in plan.recipes.items() if n != "read" and old.get(n) == k) if same_read else ()
    whole = same_read and len(keep_ops) == len(plan.recipes) - 1
    shards, chunk, size = [], [], 0
    for item in items + [None]:
        full = item is None or len(chunk) >= spec.items_per_shard or \
            size + (item.stop - item.start) > SHARD_BYTES
        if chunk and full:
            shards.append(_shard_plan(spec, plan, chunk, sources, keep_ops, whole, retry))
            chunk, size = [], 0
        if item is not None:
            chunk.append(item)
            size += item.stop - item.start
    return shards


def _shard_plan(spec: PipelineSpec, plan: RunPlan, items: list[Item],
                sources: Mapping[str, tuple[str, int, int]], keep_ops: tuple[str, ...], whole: bool,
                retry: set[str]) -> ShardPlan:
    reuse = tuple(Reuse(spec.output, *sources[it.key], keep_ops, whole)
                  if keep_ops and it.key in sources else None for it in items)
    inputs = {"salt": FORMAT_SALT, "recipes": plan.recipes, "layout": spec.layout(),
              "items": [(it.file, it.record, it.key) for it in items]}
    if retry & {it.key for it in items}:
        # A new name, so the retry is computed (not resumed) and older versions stay intact.
        inputs["retry_after_version"] = plan.previous_version
    return ShardPlan(_hash(inputs), tuple(items), reuse, share=spec.share_geometry and spec_shares(spec.ops))
