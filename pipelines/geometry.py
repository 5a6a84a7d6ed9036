"""Shared domain geometry on the worker: a spec's ops computed once per distinct structure.

Every op reads only a sample's *structure* (gdl_data/domains.py STRUCTURE: a HEALPix nside and
its pixel centres, a graph's nodes and edges, a mesh's vertices and faces), so samples with the
same structure have the same op outputs. For a sample that shares its domain (every HEALPix
map; signals over one graph or mesh, gdl_data/readers/signals.py) the worker computes

    geometry_key = hash(GEOMETRY_SALT, domain, the reader version, each op's name, code version
                        and parameters, the structure columns' dtypes, shapes and bytes)

and stores the structure and every op output once, as the shared row `geometry/<key>.parquet`
(storage/geometry.py); the sample row keeps its signals and the key. A key already computed in
this worker process, or already on disk (an earlier run, another worker), skips the ops
entirely: 1,000 maps of one nside compute the grid's geometry once per worker at most.

The key hashes op recipes of its own rather than the plan's (pipelines/cache.py), which chain
on the label rule: labels do not change geometry, and an isolated retry has no plan.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gdl_data.domains import STRUCTURE
from gdl_data.errors import SampleError
from gdl_data.ops import get_op
from gdl_data.ops.registry import params_dict
from gdl_data.readers import READERS_VERSION
from storage.geometry import GEOMETRY_KEY, geometry_exists

GEOMETRY_SALT = "gdl-geometry/1"
MEMO_ITEMS = 4          # shared rows kept per worker process (a few nsides, graphs, meshes)


def spec_shares(steps: Sequence[Any]) -> bool:
    """False when an op of the spec reads a signal column: its outputs then differ per sample."""
    return not any(get_op(step.name).reads_signals for step in steps)


def structure_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The structure columns of a reader's record (those it has)."""
    return {c: raw[c] for c in STRUCTURE[raw["domain"]] if c in raw}


def geometry_key(domain: str, steps: Sequence[Any], structure: Mapping[str, Any]) -> str:
    """Content key of a structure under a spec's ops (the name of its shared row)."""
    h = hashlib.sha256()
    recipe = {"salt": GEOMETRY_SALT, "domain": domain, "readers": READERS_VERSION,
              "ops": [(s.name, get_op(s.name).version, params_dict(s.params)) for s in steps]}
    h.update(json.dumps(recipe, sort_keys=True, default=str).encode())
    for name in sorted(structure):
        value = np.asarray(structure[name])
        data = "\x1f".join(map(str, value.ravel())).encode() if value.dtype.kind in "US" else \
            np.ascontiguousarray(value).tobytes()
        h.update(f"{name}|{value.dtype.str}|{value.shape}|{len(data)}|".encode())
        h.update(data)
    return h.hexdigest()[:32]


@dataclass
class Geometry:
    """A structure's shared row: `row` when computed here (to be written), None when on disk;
    `error` = (stage, exception) when an op failed on it."""

    key: str
    row: dict[str, Any] | None = None
    error: tuple[str, BaseException] | None = None
    computed: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


_MEMO: OrderedDict[tuple[str | None, str], Geometry] = OrderedDict()


def obtain(uri: str | None, key: str, compute: Callable[[], Geometry]) -> tuple[Geometry, bool]:
    """(the geometry of `key`, whether it was computed by this call): from this process's memo,
    else from disk (not read: only its key is needed), else computed now."""
    hit = _MEMO.get((uri, key))
    if hit is not None and hit.row is None and hit.error is None and not geometry_exists(uri, key):
        hit = None      # seen on disk by an earlier run of a long-lived worker, pruned since
    if hit is not None:
        _MEMO.move_to_end((uri, key))
        return hit, False
    fresh = not (uri and geometry_exists(uri, key))
    geometry = compute() if fresh else Geometry(key)
    _MEMO[(uri, key)] = geometry
    while len(_MEMO) > MEMO_ITEMS:
        _MEMO.popitem(last=False)
    return geometry, fresh


def compute_geometry(key: str, raw: Mapping[str, Any], steps: Sequence[Any],
                     run_step: Callable[[Any, Mapping[str, Any], dict], dict]) -> Geometry:
    """Run every op on a structure alone (plus `domain` and `source`, for dispatch and messages);
    `run_step(step, sample, geometry.seconds)` runs one op and returns its storage-typed outputs."""
    from pipelines.compute import op_input, storage_dtypes
    structure = structure_of(raw)
    base = {**structure, "domain": raw["domain"], "source": raw["source"]}
    geometry = Geometry(key)
    outputs: dict[str, dict[str, Any]] = {}
    stage = "read"
    try:
        for step in steps:
            stage = step.name
            start = time.perf_counter()
            outputs[step.name] = run_step(step, op_input(base, outputs, step), geometry.seconds)
            geometry.seconds[step.name] = geometry.seconds.get(step.name, 0.0) + time.perf_counter() - start
            geometry.computed[step.name] = 1
    except Exception as exc:  # noqa: BLE001 - a failure on the structure is each sharing sample's error
        geometry.error = (stage, exc)
        return geometry
    geometry.row = storage_dtypes(structure)
    for out in outputs.values():
        geometry.row.update(out)
    geometry.row[GEOMETRY_KEY] = key
    return geometry


def for_sample(exc: BaseException, source: str) -> BaseException:
    """A geometry's failure, renamed to one of the samples that share it."""
    if isinstance(exc, SampleError):
        return type(exc)(source, exc.detail, kind=exc.kind)
    return exc


def signal_record(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    """What a sharing sample's own row holds: every column but the structure, plus the key."""
    from pipelines.compute import storage_dtypes
    structure = set(STRUCTURE[raw["domain"]])
    record = storage_dtypes({k: v for k, v in raw.items() if k not in structure})
    record[GEOMETRY_KEY] = key
    return record
