"""Per-column statistics kept in the manifest: shape pattern and range, min, max, NaN/inf counts.

Shape pattern: one entry per axis, the size when it is the same in every sample, else null
(e.g. `evecs` -> [null, 64]: n varies, k = 64); `shape_min`/`shape_max` give each axis's range
(vertex counts 42 to 5000). `inf_count` counts ±inf values (`geo_dist`: unreachable points);
min and max are over the finite values. Computed while writing, merged on commit, so
`gdl inspect` never reads array data. Manifests written before a key existed merge without it.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np


def column_stats(values: Iterable[Any]) -> dict[str, Any] | None:
    st: dict[str, Any] | None = None
    for v in values:
        if v is None or isinstance(v, str):
            continue
        a = np.asarray(v)
        if a.dtype.kind in "biuf":
            st = merge_stats(st, _array_stats(a))
    return st


def _array_stats(a: np.ndarray) -> dict[str, Any]:
    dims = list(a.shape)
    nans = infs = 0
    if a.dtype.kind == "f" and a.size:
        nans, infs = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        a = a[np.isfinite(a)]
    lo, hi = (a.min().item(), a.max().item()) if a.size else (None, None)
    return {"shape": dims, "shape_min": dims, "shape_max": dims, "min": lo, "max": hi,
            "nan_count": nans, "inf_count": infs, "count": 1}


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
