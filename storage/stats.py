"""Per-column statistics kept in the manifest: shape pattern, min, max, NaN count.

Shape pattern: one entry per axis, the size when it is the same in every sample, else null
(e.g. `evecs` -> [null, 64]: n varies, k = 64). Computed while writing, merged on commit, so
`gdl inspect` never reads array data.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np


def column_stats(values: Iterable[Any]) -> dict[str, Any] | None:
    shape: list[int | None] | None = None
    lo, hi, nans, count = None, None, 0, 0
    for v in values:
        if v is None or isinstance(v, str):
            continue
        a = np.asarray(v)
        if a.dtype.kind not in "biuf":
            continue
        count += 1
        dims = list(a.shape)
        shape = dims if shape is None else [d if d == s else None for d, s in zip(dims, shape)]
        if a.size == 0:
            continue
        if a.dtype.kind == "f":
            nan_mask = np.isnan(a)
            nans += int(nan_mask.sum())
            a = a[~nan_mask]
            if a.size == 0:
                continue
        amin, amax = a.min().item(), a.max().item()
        lo = amin if lo is None else min(lo, amin)
        hi = amax if hi is None else max(hi, amax)
    if count == 0:
        return None
    return {"shape": shape, "min": lo, "max": hi, "nan_count": nans, "count": count}


def merge_stats(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return dict(a or b) if (a or b) else None
    shape = [x if x == y else None for x, y in zip(a["shape"], b["shape"])]
    def pick(f, x, y):
        return y if x is None else x if y is None else f(x, y)
    return {"shape": shape, "min": pick(min, a["min"], b["min"]), "max": pick(max, a["max"], b["max"]),
            "nan_count": a["nan_count"] + b["nan_count"], "count": a["count"] + b["count"]}
