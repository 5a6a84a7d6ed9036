"""Per-column statistics kept in the manifest: shape pattern and range, min, max, NaN/inf counts.

Shape pattern: one entry per axis, the size when it is the same in every sample, else null
(e.g. `evecs` -> [null, 64]: n varies, k = 64); `shape_min`/`shape_max` give each axis's range
(vertex counts 42 to 5000). `inf_count` counts ±inf values (`geo_dist`: unreachable points);
min and max are over the finite values. Computed while writing, merged on commit, so
`gdl inspect` never reads array data. Manifests written before a key existed merge without it.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np


def column_stats(values: Iterable[Any]) -> dict[str, Any] | None:
    arrays = [a for a in (np.asarray(v) for v in values if v is not None and not isinstance(v, str))
              if a.dtype.kind in "biuf"]
    if not arrays:
        return None
    shapes = np.array([a.shape for a in arrays], dtype=np.int64).reshape(len(arrays), -1)
    # One reduction over all values at once: per-sample reductions cost ~10 us each, which is
    # most of the time for small samples (molecules). Large samples are reduced one by one so
    # that no copy of a whole shard's column is made.
    small = sum(a.size for a in arrays) <= 1 << 22
    return values_stats([np.concatenate([a.ravel() for a in arrays])] if small else [a.ravel() for a in arrays],
                        shapes)


def values_stats(parts: Sequence[np.ndarray], shapes: np.ndarray) -> dict[str, Any] | None:
    """column_stats of arrays given as their values (1-d `parts`, joined or not: the result is
    the same) and their shapes (one row per array): the writer's path for columns it holds
    joined already (storage/concat.py)."""
    if not len(shapes):
        return None
    shape = [int(col[0]) if (col == col[0]).all() else None for col in shapes.T]
    lo = hi = None
    nans = infs = 0
    for a in parts:
        if a.dtype.kind == "f" and a.size:
            nans, infs = nans + int(np.isnan(a).sum()), infs + int(np.isinf(a).sum())
            a = a[np.isfinite(a)]
        if a.size:
            amin, amax = a.min().item(), a.max().item()
            lo = amin if lo is None else min(lo, amin)
            hi = amax if hi is None else max(hi, amax)
    return {"shape": shape, "shape_min": shapes.min(axis=0).tolist(), "shape_max": shapes.max(axis=0).tolist(),
            "min": lo, "max": hi, "nan_count": nans, "inf_count": infs, "count": len(shapes)}


def merge_stats(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return dict(a or b) if (a or b) else None

    def pick(f, x, y):
        return y if x is None else x if y is None else f(x, y)

    out = {"shape": [x if x == y else None for x, y in zip(a["shape"], b["shape"])],
           "min": pick(min, a["min"], b["min"]), "max": pick(max, a["max"], b["max"]),
           "nan_count": a["nan_count"] + b["nan_count"], "count": a["count"] + b["count"]}
    if "inf_count" in a and "inf_count" in b:
        out["inf_count"] = a["inf_count"] + b["inf_count"]
    if all(k in s for k in ("shape_min", "shape_max") for s in (a, b)):
        out["shape_min"] = [min(x, y) for x, y in zip(a["shape_min"], b["shape_min"])]
        out["shape_max"] = [max(x, y) for x, y in zip(a["shape_max"], b["shape_max"])]
    return out
