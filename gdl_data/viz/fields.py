"""Which numbers a picture shows: `--column NAME[:j]` resolved against one sample.

A *field* is one value per node (vertex, atom, graph node or HEALPix pixel). It comes from

* a per-node column of shape (n,) -- `mass`, `z`, a 1-d `y`;
* one component j of a per-node column of shape (n, c) -- `evecs:j` (the j-th eigenfunction),
  `values:j`, `x:j`, `pos:2`;
* `geo_dist:j` -- the distances from the j-th geodesic source, whose node is marked.

Everything here is numpy only, shared by the mesh, sphere and graph renderers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from gdl_data.errors import SpecError
from gdl_data.params import Integer, check_value

# What each domain shows when no --column is given (eigenfunction 0 is constant, so 1).
DEFAULT_COLUMNS = {"mesh": ("evecs", 1), "sphere": ("values", 0), "graph": ("y", 0),
                   "molecule": ("z", None)}


@dataclass(frozen=True)
class Field:
    """One value per node, ready to colour: `label` is the title, `marker` a node to mark."""

    values: np.ndarray          # (n,) float64; unreachable / missing values are NaN
    label: str
    marker: int | None = None
    categorical: bool = False   # class labels: discrete colours and a legend, not a colour bar

    @property
    def unreachable(self) -> bool:
        """Some values are NaN (inf distances): the picture needs a legend for their grey."""
        return bool(np.isnan(self.values).any())


MAX_CLASSES = 12   # more distinct labels than this read better as a continuous scale


def _is_classes(column: str, values: np.ndarray) -> bool:
    # `y` holds labels (node classes from a graph file, folder names); a few whole numbers.
    finite = values[np.isfinite(values)]
    return column == "y" and finite.size > 0 and bool(np.all(finite == np.round(finite))) \
        and len(np.unique(finite)) <= MAX_CLASSES


def parse_column(text: str) -> tuple[str, int | None]:
    """`"evecs:3"` -> `("evecs", 3)`; `"mass"` -> `("mass", None)`."""
    name, sep, index = str(text).strip().partition(":")
    if not name or (sep and not index.strip().isdigit()):
        raise SpecError(f"cannot read the column '{text}': write NAME or NAME:j with j a "
                        f"non-negative integer, e.g. 'evecs:3' or 'geo_dist:0'")
    return name, (int(index) if sep else None)


def node_count(sample: Mapping[str, Any]) -> int:
    """Number of nodes n of a sample (vertices, atoms, graph nodes, pixels)."""
    if "pos" in sample:
        return len(sample["pos"])
    if "num_nodes" in sample:
        return int(sample["num_nodes"])
    if "values" in sample:
        return len(sample["values"])
    raise SpecError(f"{_where(sample)}: cannot tell how many nodes it has "
                    f"(no 'pos', 'num_nodes' or 'values' column)")


def showable_columns(sample: Mapping[str, Any]) -> list[str]:
    """The columns `--column` accepts for this sample, as `name` or `name:0..c-1`."""
    n = node_count(sample)
    out = []
    for name, value in sample.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf" or arr.ndim == 0:
            continue
        if name == "geo_dist" and arr.ndim == 2 and arr.shape[1] == n:
            out.append(f"geo_dist:0..{arr.shape[0] - 1}")
        elif arr.ndim == 1 and arr.shape[0] == n:
            out.append(name)
        elif arr.ndim == 2 and arr.shape[0] == n:
            out.append(f"{name}:0..{arr.shape[1] - 1}")
    return sorted(out)


def resolve_field(sample: Mapping[str, Any], column: str, component: int | None) -> Field:
    """The field `column[:component]` of `sample`; SpecError saying what to write instead."""
    arr = np.asarray(require_column(sample, column))
    n = node_count(sample)
    if column == "geo_dist" and arr.ndim == 2 and arr.shape[1] == n:
        j = _check_component(sample, column, component or 0, arr.shape[0], "geodesic sources")
        sources = sample.get("geo_sources")
        marker = int(np.asarray(sources)[j]) if sources is not None else None
        return Field(_finite_or_nan(arr[j]), f"geo_dist:{j}", marker)
    if arr.ndim == 1 and arr.shape[0] == n:
        if component:
            raise SpecError(f"{_where(sample)}: column '{column}' has one value per node; "
                            f"write '--column {column}' without ':{component}'")
        values = _finite_or_nan(arr)
        return Field(values, column, categorical=_is_classes(column, values))
    if arr.ndim == 2 and arr.shape[0] == n:
        j = _check_component(sample, column, component or 0, arr.shape[1], "components")
        return Field(_finite_or_nan(arr[:, j]), f"{column}:{j}")
    raise SpecError(f"{_where(sample)}: column '{column}' (shape {arr.shape}) is not one value "
                    f"per node (n = {n}); columns you can show: {', '.join(showable_columns(sample))}")


def resolve_grid(sample: Mapping[str, Any], column: str, start: int | None, count: int) -> list[Field]:
    """`count` consecutive components of `column` from `start` (default 0): the `--grid` panels."""
    check_value("--grid", count, Integer(1), example=8, error=SpecError)
    start = start or 0
    arr = np.asarray(require_column(sample, column))
    available = arr.shape[0] if column == "geo_dist" else (arr.shape[1] if arr.ndim == 2 else 1)
    if start + count > available:
        raise SpecError(f"{_where(sample)}: --grid {count} from '{column}:{start}' needs "
                        f"{start + count} components but '{column}' has {available}; "
                        f"write --grid {max(available - start, 1)} or recompute with more")
    return [resolve_field(sample, column, start + i) for i in range(count)]


def require_column(sample: Mapping[str, Any], column: str) -> Any:
    """`sample[column]`, or a SpecError naming the op that adds it and what can be shown."""
    if column in sample:
        return sample[column]
    op = producing_op(column)
    hint = f"run the {op} op first (add '{op}' under ops: in the spec); " if op else ""
    raise SpecError(f"{_where(sample)}: dataset has no column '{column}'; {hint}"
                    f"available: {', '.join(showable_columns(sample)) or '(none)'}")


def producing_op(column: str) -> str | None:
    """The registered op whose outputs include `column` (None if no op adds it)."""
    from gdl_data.ops.registry import list_ops  # the registry knows each op's outputs
    return next((name for name, op in sorted(list_ops().items()) if column in op.outputs), None)


def colour_scale(values: np.ndarray) -> tuple[float, float, str]:
    """(vmin, vmax, colormap): a diverging map centred on 0 for signed fields (eigenfunctions,
    whose sign is a convention), a sequential one otherwise (distances, masses)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0, "viridis"
    lo, hi = float(finite.min()), float(finite.max())
    if lo < 0 < hi:
        bound = max(-lo, hi)
        return -bound, bound, "RdBu_r"
    if lo == hi:  # a constant field (eigenfunction 0): widen so the colour bar is readable
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    return lo, hi, "viridis"


def sample_title(sample: Mapping[str, Any]) -> str:
    """Short name of the sample for picture titles: the file name and record of its source."""
    source = str(sample.get("source", ""))
    return source.replace("\\", "/").rsplit("/", 1)[-1] or str(sample.get("sample_id", ""))[:8]


def _check_component(sample, column: str, j: int, count: int, what: str) -> int:
    if not 0 <= j < count:
        raise SpecError(f"{_where(sample)}: '{column}:{j}' is out of range; '{column}' has "
                        f"{count} {what}, write '{column}:0' to '{column}:{count - 1}'")
    return j


def _finite_or_nan(values: np.ndarray) -> np.ndarray:
    # inf marks unreachable nodes (shared/DESIGN.md); the renderers draw NaN in a neutral grey.
    out = np.asarray(values, dtype=np.float64).copy()
    out[~np.isfinite(out)] = np.nan
    return out


def _where(sample: Mapping[str, Any]) -> str:
    return str(sample.get("source") or sample.get("sample_id") or "sample")
