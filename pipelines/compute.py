"""Per-file work, run on a Dask worker: read the samples of one raw file and apply the ops.

Plain functions of plain data, so they run the same in a notebook, a test, or a worker.
A bad sample becomes an error row (`source`, `stage`, `error`, `message`, `traceback`) and the
other samples of the file go on; nothing here raises for bad input.
"""
from __future__ import annotations

import functools
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from gdl_data.errors import GdlError
from gdl_data.ops import get_op
from gdl_data.readers import iter_samples
from pipelines.cache import FileState, Reuse
from pipelines.labels import LabelRule
from pipelines.sources import local_copy
from pipelines.spec import OpStep
from storage.reader import read_rows


@dataclass
class FileResult:
    """What one raw file produced: stored records, error rows, seconds per stage, ops reused."""

    file: FileState
    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)


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
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iub":
            arr = arr.astype(np.int64)
        out[key] = arr
    return out


def op_input(raw: Mapping[str, Any], outputs: Mapping[str, dict[str, Any]], step: OpStep) -> dict[str, Any]:
    """What an op sees: the reader's columns plus the outputs of the ops it depends on."""
    sample = dict(raw)
    for dep in get_op(step.name).depends_on:
        sample.update(outputs.get(dep, {}))
    return sample


@functools.lru_cache(maxsize=2)
def _old_shard_rows(dataset: str, shard_path: str, ops: tuple[str, ...]) -> list[dict[str, Any]]:
    """The reused ops' columns of an old shard, read once per worker process: the files of a
    shard arrive one after another, and each would otherwise re-read the same row groups."""
    columns = [c for op in ops for c in get_op(op).outputs]
    return read_rows(dataset, shard_path, 0, 1 << 62, columns)


def process_file(file: FileState, domain: str, steps: Sequence[OpStep], reuse: Reuse | None = None,
                 labels: LabelRule | None = None) -> FileResult:
    """Read every sample of one raw file and apply `steps`; never raises for bad input.

    With `reuse`, the columns of the ops it names are copied from the old shard's rows (matched
    by sample id) and only the other ops run. Each op's output is cast to storage dtypes before
    later ops see it, so a partial recompute gives the same bytes as a full one.
    """
    result = FileResult(file)
    start = time.perf_counter()
    try:
        with local_copy(file.file) as path:
            samples = list(iter_samples(path, domain, source=file.file))
    except Exception as exc:  # an I/O failure reading the file at all
        result.errors.append(error_row(file.file, "read", exc))
        return result
    result.seconds["read"] = time.perf_counter() - start
    old = {}
    if reuse:
        rows = _old_shard_rows(reuse.dataset, reuse.shard_path, reuse.ops)
        old = {r["sample_id"]: r for r in rows[reuse.row_start:reuse.row_start + reuse.rows]}
    for sample in samples:
        if isinstance(sample, GdlError):
            result.errors.append(error_row(sample.source, "read", sample))
            continue
        raw = sample.record()
        if labels is not None:
            raw.update(labels.columns_for(file.file, raw))
        outputs: dict[str, dict[str, Any]] = {}
        stage = "read"
        try:
            for step in steps:
                stage = step.name
                prior = old.get(sample.sample_id)
                if prior is not None and step.name in reuse.ops:
                    outputs[step.name] = {k: prior[k] for k in get_op(step.name).outputs if k in prior}
                    result.reused[step.name] = result.reused.get(step.name, 0) + 1
                    continue
                t0 = time.perf_counter()
                out = get_op(step.name).run(op_input(raw, outputs, step), step.params)
                outputs[step.name] = storage_dtypes(out)
                result.seconds[step.name] = result.seconds.get(step.name, 0.0) + time.perf_counter() - t0
                result.computed[step.name] = result.computed.get(step.name, 0) + 1
        except Exception as exc:
            result.errors.append(error_row(sample.source, stage, exc, sample.sample_id))
            continue
        record = storage_dtypes(raw)
        for out in outputs.values():
            record.update(out)
        result.records.append(record)
    for e in result.errors:
        e.update(file=file.file, file_key=file.file_key)
    return result
