"""Work on a Dask worker: read the samples of a shard's items, apply the ops, write the shard.

Plain functions of plain data, so they run the same in a notebook, a test, or a worker.
A bad sample becomes an error row (`source`, `stage`, `error`, `message`, `traceback`) and the
other samples go on; nothing here raises for bad input. A sample whose estimated memory exceeds
the worker's budget is refused before it starts (an `over-budget` row), so it cannot take its
worker down; one that kills its worker anyway is caught by the orchestrator (pipelines/execute.py).
"""
from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from gdl_data.errors import GdlError
from gdl_data.ops import get_op
from gdl_data.readers import iter_samples, read_records
from pipelines import geometry as shared
from pipelines.cache import WHOLE_FILE, Item, Reuse, ShardPlan
from pipelines.labels import LabelRule
from pipelines.sources import local_copy
from pipelines.spec import OpStep
from storage import infer_infos, read_shard_entry, shard_done, write_shard
from storage.geometry import GEOMETRY_KEY, geometry_exists, write_geometry
from storage.concat import rows_part
from storage.reader import read_rows, read_stored
from storage.writer import sidecar_table


@dataclass
class ItemResult:
    """What one item produced: stored records, error rows, seconds per stage, ops reused."""

    item: Item
    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    geometry: dict[str, dict[str, Any]] = field(default_factory=dict)   # shared rows computed here
    counts: dict[str, int] = field(default_factory=dict)    # samples_read, geometry_computed/_reused
    copied: Copied | None = None     # instead of records: its rows copied whole from an old shard

    @property
    def rows(self) -> int:
        return self.copied.rows if self.copied is not None else len(self.records)


@dataclass(frozen=True)
class Copied:
    """Rows an item copies whole from an old shard, as stored: where they are, and the item's
    `source` now (None: as stored). Only this travels; the writer reads the rows (_parts)."""

    dataset: str
    shard_path: str
    start: int
    rows: int
    source: str | None


@dataclass
class ShardResult:
    """What a shard task hands back to the orchestrator: metadata only, no arrays."""

    entry: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    place: str = "dask worker"       # where it was computed: or "forked process" (small runs)
    notes: dict[str, int] = field(default_factory=dict)   # warnings the ops gave, with counts
    sidecar_rows: pa.Table | None = None    # for the version's items index (None: resumed)

    @property
    def items(self) -> int:
        return int(self.entry.get("files", 0))


def error_row(source: str, stage: str, exc: BaseException, sample_id: str | None = None) -> dict[str, Any]:
    """One errors-table row; the message is one line naming the file (and record)."""
    if isinstance(exc, GdlError):
        kind, tb = exc.kind, None
        message = str(exc) if source in str(exc) else f"{source}: {exc}"
    else:
        kind = type(exc).__name__
        message = f"{source}: {type(exc).__name__}: {exc}".splitlines()[0]
        tb = "".join(traceback.format_exception(exc))
    return {"source": source, "sample_id": sample_id, "stage": stage, "error": kind,
            "message": message, "traceback": tb}


def storage_dtypes(columns: Mapping[str, Any]) -> dict[str, Any]:
    """float -> float32 and int -> int64 (shared/DESIGN.md); strings kept."""
    out = {}
    for key, value in columns.items():
        if isinstance(value, str) or value is None:
            out[key] = value
            continue
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32, copy=False)
        elif arr.dtype.kind in "iub":
            arr = arr.astype(np.int64, copy=False)     # most already are: no copy
        out[key] = arr
    return out


def op_input(raw: Mapping[str, Any], outputs: Mapping[str, dict[str, Any]], step: OpStep) -> dict[str, Any]:
    """What an op sees: the reader's columns plus the outputs of the ops it depends on."""
    sample = dict(raw)
    for dep in get_op(step.name).depends_on:
        sample.update(outputs.get(dep, {}))
    return sample


def worker_budget() -> int | None:
    """The memory budget (bytes) of the Dask worker running this code; None outside a worker."""
    try:
        from distributed import get_worker
        return get_worker().memory_manager.memory_limit or None
    except (ImportError, ValueError):
        return None


def check_budget(step: OpStep, sample: Mapping[str, Any], budget: int | None) -> None:
    """Refuse a sample whose estimated peak memory for `step` exceeds the worker's budget
    (gdl_data/ops/estimates.py), before it can take its worker down."""
    op = get_op(step.name)
    if budget is not None and op.estimate_bytes(sample, step.params) > budget:
        raise op.over_budget(sample, step.params, budget)


@functools.lru_cache(maxsize=2)
def _old_shard_rows(dataset: str, shard_path: str, columns: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """Columns of an old shard, read once per worker process: the items of a shard arrive one
    after another, and each would otherwise re-read the same row groups."""
    return read_rows(dataset, shard_path, 0, 1 << 62, list(columns) if columns is not None else None)


@functools.lru_cache(maxsize=2)
def _old_shard_table(dataset: str, shard_path: str) -> pa.Table:
    """An old shard as stored, read once per worker process (as _old_shard_rows)."""
    return read_stored(dataset, shard_path)


def _copied(item: Item, reuse: Reuse) -> Copied:
    """Where the rows of an item copied whole are (those the old shard holds), and its source: a
    record's is renamed to where it is now (a record may have moved: "file#12" -> "file#11")."""
    held = _old_shard_table(reuse.dataset, reuse.shard_path).num_rows
    rows = max(0, min(reuse.rows, held - reuse.row_start))
    return Copied(reuse.dataset, reuse.shard_path, reuse.row_start, rows,
                  item.source if item.record != WHOLE_FILE else None)


def _copied_rows(reuse: Reuse) -> dict[str, dict[str, Any]]:
    columns = None if reuse.whole else tuple(c for op in reuse.ops for c in get_op(op).outputs) + ("sample_id",)
    rows = _old_shard_rows(reuse.dataset, reuse.shard_path, columns)
    return {r["sample_id"]: r for r in rows[reuse.row_start:reuse.row_start + reuse.rows]}


def read_items(items: Sequence[Item], domain: str) -> Iterator[list]:
    """The samples (or ReadErrors) of each item, in order: a whole file is read whole; a run of
    records of one file is read with one open, each record by its byte span. An item whose file
    cannot be read at all gives [exception]."""
    i = 0
    while i < len(items):
        item = items[i]
        if item.record == WHOLE_FILE:
            try:
                with local_copy(item.file) as path:
                    yield list(iter_samples(path, domain, source=item.file))
            except Exception as exc:  # noqa: BLE001 - an I/O failure reading the file at all
                yield [exc]
            i += 1
            continue
        run = [item]
        while i + len(run) < len(items) and items[i + len(run)].file == item.file \
                and items[i + len(run)].record != WHOLE_FILE:
            run.append(items[i + len(run)])
        spans = [(it.record, it.start, it.stop) for it in run]
        for sample in read_records(item.file, domain, spans, source=item.file):
            yield [sample]      # one Sample or ReadError per record
        i += len(run)


def process_item(item: Item, domain: str, steps: Sequence[OpStep], reuse: Reuse | None = None,
                 labels: LabelRule | None = None, budget: int | None = None,
                 samples: list | None = None, *, share: bool = False, uri: str | None = None) -> ItemResult:
    """Read every sample of one item (unless `samples` were read already) and apply `steps`;
    never raises for bad input. process_items for one item (the isolated retry's unit)."""
    if samples is None:
        start = time.perf_counter()
        samples = next(read_items([item], domain))
        seconds = time.perf_counter() - start
    else:
        seconds = 0.0
    result = process_items([item], domain, steps, [reuse], labels, budget, [samples], share=share, uri=uri)[0]
    result.seconds["read"] = seconds
    return result


@dataclass
class _Pending:
    """A sample waiting for its ops: where its record goes, its columns so far, what it may copy."""

    result: ItemResult
    slot: int
    raw: dict[str, Any]
    prior: Mapping[str, Any] | None
    reuse: Reuse | None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def process_items(items: Sequence[Item], domain: str, steps: Sequence[OpStep], reuses: Sequence[Reuse | None],
                  labels: LabelRule | None, budget: int | None, samples: Sequence[list], *,
                  share: bool = False, uri: str | None = None) -> list[ItemResult]:
    """Apply `steps` to the read `samples` of each item (a list of Samples or exceptions per
    item); one ItemResult per item, never raising for bad input.

    With `share`, a sample that shares its domain (pipelines/geometry.py) gets its op outputs
    from the shared row of its structure, computed at most once per worker and not at all when
    dataset `uri` already holds it. The others go through each op together (Op.run_batch: the
    same bytes as one at a time, less overhead per molecule).

    With `reuse`, the columns of the ops it names are copied from the old shard's rows (matched
    by sample id) and only the other ops run; with `reuse.whole`, the item is not read at all and
    its rows are copied as stored (ItemResult.copied).
    Each op's output is cast to storage dtypes before later ops see it, so a partial recompute
    gives the same bytes as a full one.
    """
    results, pending = [], []
    for item, reuse, read in zip(items, reuses, samples):
        result = ItemResult(item)
        results.append(result)
        if reuse and reuse.whole:
            copied = _copied(item, reuse)
            if copied.rows:
                result.copied = copied
                for step in steps:
                    result.reused[step.name] = copied.rows
                continue
        old = _copied_rows(reuse) if reuse and not reuse.whole else {}
        for sample in read:
            raw = _raw_record(result, item, sample, labels)
            if raw is None:
                continue
            if share and sample.shares_domain:
                _apply_shared(result, raw, steps, uri, budget)
            else:
                result.records.append(None)      # its place: filled once every op has run
                pending.append(_Pending(result, len(result.records) - 1, raw, old.get(sample.sample_id), reuse))
    _apply_ops(pending, steps, budget)
    for result in results:
        result.records = [r for r in result.records if r is not None]
    return [_tagged(r) for r in results]


def _raw_record(result: ItemResult, item: Item, sample: Any, labels: LabelRule | None) -> dict[str, Any] | None:
    """The reader's columns of one sample (with its labels), or None after an error row for it."""
    if isinstance(sample, GdlError):
        result.errors.append(error_row(sample.source, "read", sample))
        return None
    if isinstance(sample, Exception):
        result.errors.append(error_row(item.source, "read", sample))
        return None
    raw = sample.record()
    if labels is not None:
        raw.update(labels.columns_for(item.file, raw))
    result.counts["samples_read"] = result.counts.get("samples_read", 0) + 1
    return raw


def _apply_ops(pending: list[_Pending], steps: Sequence[OpStep], budget: int | None) -> None:
    """Each op in turn over every pending sample (copying what a sample may reuse); a sample
    that fails an op gets its error row and leaves; the others get their records."""
    for step in steps:
        todo = []
        for p in pending:
            if p.prior is not None and step.name in p.reuse.ops:
                p.outputs[step.name] = {k: p.prior[k] for k in get_op(step.name).outputs if k in p.prior}
                p.result.reused[step.name] = p.result.reused.get(step.name, 0) + 1
            else:
                todo.append(p)
        failed = _run_on(step, todo, budget)
        pending = [p for p in pending if id(p) not in failed]
    for p in pending:
        record = storage_dtypes(p.raw)
        for out in p.outputs.values():
            record.update(out)
        p.result.records[p.slot] = record


def _run_on(step: OpStep, todo: list[_Pending], budget: int | None) -> set[int]:
    """Run one op on the samples `todo` together; the ids of those that failed (error rows written)."""
    if not todo:
        return set()
    start = time.perf_counter()
    outs = run_steps(step, [op_input(p.raw, p.outputs, step) for p in todo], budget)
    share = (time.perf_counter() - start) / len(todo)
    failed = set()
    for p, out in zip(todo, outs):
        p.result.seconds[step.name] = p.result.seconds.get(step.name, 0.0) + share
        if isinstance(out, Exception):
            p.result.errors.append(error_row(p.raw["source"], step.name, out, p.raw["sample_id"]))
            failed.add(id(p))
        else:
            p.outputs[step.name] = out
            p.result.computed[step.name] = p.result.computed.get(step.name, 0) + 1
    return failed


def run_steps(step: OpStep, samples: Sequence[Mapping[str, Any]], budget: int | None) -> list[dict[str, Any] | Exception]:
    """One op on many samples of a domain, each within the worker's budget (a sample over it
    gets its over-budget error and is not run); outputs in storage dtypes, or the exception."""
    outs: list[dict[str, Any] | Exception] = [None] * len(samples)
    runnable = []
    for i, sample in enumerate(samples):
        try:
            check_budget(step, sample, budget)
            runnable.append(i)
        except Exception as exc:  # noqa: BLE001 - the sample's over-budget row
            outs[i] = exc
    computed = get_op(step.name).run_batch([samples[i] for i in runnable], step.params) if runnable else []
    for i, out in zip(runnable, computed):
        outs[i] = out if isinstance(out, Exception) else storage_dtypes(out)
    return outs


def run_step(step: OpStep, sample: Mapping[str, Any], budget: int | None) -> dict[str, Any]:
    """One op on one sample, within the worker's budget; outputs in storage dtypes."""
    check_budget(step, sample, budget)
    return storage_dtypes(get_op(step.name).run(sample, step.params))


def _apply_shared(result: ItemResult, raw: dict[str, Any], steps: Sequence[OpStep], uri: str | None,
                  budget: int | None) -> None:
    key = shared.geometry_key(raw["domain"], steps, shared.structure_of(raw))
    geometry, fresh = shared.obtain(uri, key, lambda: shared.compute_geometry(
        key, raw, steps, lambda step, sample, _seconds: run_step(step, sample, budget)))
    if fresh:
        _add(result.seconds, geometry.seconds)
        _add(result.computed, geometry.computed)
    if geometry.error is not None:
        stage, exc = geometry.error
        result.errors.append(error_row(raw["source"], stage, shared.for_sample(exc, raw["source"]),
                                       raw["sample_id"]))
        return
    for step in steps if not fresh else ():
        result.reused[step.name] = result.reused.get(step.name, 0) + 1
    counter = "geometry_computed" if fresh else "geometry_reused"
    result.counts[counter] = result.counts.get(counter, 0) + 1
    if geometry.row is not None:      # computed in this process: the shard writes it if absent
        result.geometry[key] = geometry.row
    result.records.append(shared.signal_record(raw, key))


def _tagged(result: ItemResult) -> ItemResult:
    for e in result.errors:
        e.update(file=result.item.file, file_key=result.item.file_key)
    return result


def died_result(item: Item, message: str) -> ItemResult:
    """The result of an item whose worker died computing it (twice: once in its shard, once alone)."""
    result = ItemResult(item)
    result.errors.append({"source": item.source, "sample_id": item.key if item.record != WHOLE_FILE else None,
                          "stage": "compute", "error": "worker-died", "message": f"{item.source}: {message}",
                          "traceback": None})
    return _tagged(result)


@functools.cache
def one_blas_thread() -> None:
    """Once per worker process: one BLAS thread. Workers forked from the orchestrator inherit its
    BLAS pools, and N workers x N BLAS threads would oversubscribe the cores."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)


@contextlib.contextmanager
def notes_counted(into: dict[str, int]) -> Iterator[None]:
    """Warnings raised inside (an op's "k=8 eigenpairs asked of a problem of size 5") counted
    by message into `into`, not printed: a worker would print each one with its source line,
    and the run reports them once (pipelines/execute.py)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        message = str(warning.message)
        into[message] = into.get(message, 0) + 1


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a shard computes. A shard of small samples allocates
    hundreds of thousands of containers (a record dict, arrays, RDKit wrappers per molecule),
    which start a collection every 700 allocations, each scanning every live object a worker
    holds (Dask's own state included): 8 % of a molecule shard's time (bench/RESULTS.md).
    What a shard builds is freed by reference counting; cycles wait for the next collection."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def resumed(uri: str, shard: ShardPlan) -> ShardResult | None:
    """The result of a shard a killed run already finished (found by its name), else None."""
    if not shard_done(uri, shard.name):
        return None
    entry = read_shard_entry(uri, shard.name)
    return ShardResult(entry, errors=entry["errors"], resumed=True)


def compute_shard(uri: str, shard: ShardPlan, domain: str, steps: Sequence[OpStep],
                  labels: LabelRule | None, layout: Mapping[str, Any], budget: int | None = None) -> ShardResult:
    """Runs on a worker: compute every item of a shard and write the shard; metadata back.
    `budget`: bytes a sample may need (default: the Dask worker's memory limit)."""
    one_blas_thread()
    budget = budget if budget is not None else worker_budget()
    # Items copied whole are not read; the others are read in runs (one open per file).
    to_read = [it for it, re in zip(shard.items, shard.reuse) if not (re and re.whole)]
    notes: dict[str, int] = {}
    with collector_paused(), notes_counted(notes):
        start = time.perf_counter()
        read = dict(zip(to_read, read_items(to_read, domain)))
        seconds = time.perf_counter() - start
        results = process_items(shard.items, domain, steps, shard.reuse, labels, budget,
                                [read.get(item, []) for item in shard.items], share=shard.share, uri=uri)
        out = write_items(uri, shard.name, results, layout)
    out.seconds["read"] = seconds
    out.notes = notes
    return out


def _add(into: dict[str, float], more: Mapping[str, float]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _parts(results: Sequence[ItemResult]) -> list[pa.Table]:
    """The shard's rows as tables to join (storage/concat.py), in order: each run of computed
    records as one table, each run of rows copied from one old shard one after another as one
    slice of it (a part per item would cost ~1 ms per item to join)."""
    parts = []
    for computed, group in itertools.groupby(results, key=lambda res: res.copied is None):
        if computed:
            records = [r for res in group for r in res.records]
            parts += [rows_part(records)] if records else []
            continue
        run: list[Copied] = []
        for copied in (res.copied for res in group):
            if run and (copied.dataset, copied.shard_path, copied.start) != \
                    (run[-1].dataset, run[-1].shard_path, run[-1].start + run[-1].rows):
                parts.append(_copied_part(run))
                run = []
            run.append(copied)
        parts.append(_copied_part(run))
    return parts


def _copied_part(run: Sequence[Copied]) -> pa.Table:
    """The rows of items copied from one old shard, one after another, with their sources now."""
    first = run[0]
    table = _old_shard_table(first.dataset, first.shard_path).slice(first.start, sum(c.rows for c in run))
    if all(c.source is None for c in run):
        return table
    stored = table.column("source").to_pylist()
    sources = [stored[c.start - first.start + k] if c.source is None else c.source
               for c in run for k in range(c.rows)]
    i = table.schema.get_field_index("source")
    return table.set_column(i, table.schema.field(i), pa.array(sources, pa.string()))


def write_items(uri: str, name: str, results: Sequence[ItemResult], layout: Mapping[str, Any]) -> ShardResult:
    """Gather the records of a shard's items into one Parquet shard with its item index, laid
    out as `layout` says (PipelineSpec.layout: row_group_size, compression); the shared rows its
    records reference are written first (if absent), so a shard on disk never references a
    missing one (a resumed run trusts finished shards)."""
    records = [r for res in results for r in res.records]
    index = [{**res.item.__dict__, "samples": res.rows, "errors": res.errors} for res in results]
    start = time.perf_counter()
    rows = {k: row for res in results for k, row in res.geometry.items()}
    for key, row in rows.items():
        if not geometry_exists(uri, key):
            write_geometry(uri, key, row)
    keys = {r[GEOMETRY_KEY] for r in records if r.get(GEOMETRY_KEY)}
    parts = _parts(results) if any(res.copied is not None for res in results) else None
    for table in parts or ():      # with copied rows, every row goes as a table to join
        if GEOMETRY_KEY in table.column_names:
            keys.update(k for k in table.column(GEOMETRY_KEY).to_pylist() if k)
    infos = infer_infos(records) if records and parts is None else None
    sidecar = sidecar_table(name, index)
    entry = write_shard(uri, records if parts is None else [], infos, name=name, files=index,
                        row_group_size=layout["row_group_size"], compression=layout["compression"],
                        geometry=sorted(keys), parts=parts, sidecar=sidecar)
    out = ShardResult(entry, errors=[e for res in results for e in res.errors], sidecar_rows=sidecar)
    for res in results:
        _add(out.seconds, res.seconds)
        _add(out.computed, res.computed)
        _add(out.reused, res.reused)
        _add(out.counts, res.counts)
    out.seconds["write"] = time.perf_counter() - start
    return out
