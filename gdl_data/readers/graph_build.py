"""Building a checked Graph sample from node ids, edges and node attributes, whatever the format.

The conventions every graph reader shares (documented in graph.py): node features are the
numeric node attributes, a node attribute named `y` is the label, weights are positive.
"""
from __future__ import annotations

import math
import re

import numpy as np

from gdl_data.domains import Graph
from gdl_data.errors import ReadError
from gdl_data.readers.validate import both_directions, check_float32_range

LABEL = "y"


def natural_key(name: str) -> list:
    """Sort key that puts x2 before x10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def sort_ids(ids) -> list[str]:
    """Node ids as strings, sorted as integers when every id is one, else as text."""
    ids = [str(i) for i in ids]
    if all(re.fullmatch(r"-?\d+", i) for i in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def check_weights(weights, source: str, where: str) -> np.ndarray:
    """Weights as float64, each finite and > 0; `where(i)` names edge i in messages."""
    weights = np.asarray(weights, dtype=np.float64)
    for test, kind, what in ((~np.isfinite(weights), "non-finite-weight", "is not finite"),
                             (weights < 0, "negative-weight", "is negative"),
                             (weights == 0, "zero-weight", "is zero (drop the edge instead)")):
        bad = np.flatnonzero(test)
        if len(bad):
            raise ReadError(source, f"{where(int(bad[0]))} has weight {weights[bad[0]]}, which {what}; "
                                    f"weights must be positive ({len(bad)} such edges)", kind=kind)
    check_float32_range(weights, source, "edge weights")
    return weights


def node_attributes(columns: dict[str, list], source: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(x, y) from per-node attribute columns (each a list in node order, None where missing).

    `y` is the label: integers stay int64, other numbers float64, text becomes int64 class codes
    numbered in sorted order of the distinct labels. Every other attribute whose values are all
    numbers is a feature column of `x`, in natural order of the attribute names; text
    attributes are ignored.
    """
    y = _labels(columns[LABEL], source) if LABEL in columns else None
    features = [name for name in sorted(columns, key=natural_key)
                if name != LABEL and _numeric(columns[name])]
    for name in features:
        missing = [i for i, v in enumerate(columns[name]) if v is None]
        if missing:
            raise ReadError(source, f"node attribute '{name}' is missing for {len(missing)} nodes "
                                    f"(first: node {missing[0]})", kind="missing-attribute")
    if not features:
        return None, y
    x = np.array([[float(v) for v in columns[name]] for name in features], dtype=np.float64).T
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise ReadError(source, f"node {bad[0]} has non-finite features {x[bad[0]].tolist()}",
                        kind="non-finite-features")
    return x, y


def _numeric(values: list) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float, np.integer, np.floating)) for v in present)


def _labels(values: list, source: str) -> np.ndarray:
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        raise ReadError(source, f"the label '{LABEL}' is missing for {len(missing)} nodes "
                                f"(first: node {missing[0]})", kind="missing-attribute")
    if _numeric(values):
        array = np.asarray(values, dtype=np.float64)
        return array.astype(np.int64) if np.all(array == np.round(array)) else array
    code = {label: i for i, label in enumerate(sorted({str(v) for v in values}))}
    return np.array([code[str(v)] for v in values], dtype=np.int64)


def build_graph(source: str, sample_id: str, node_ids: list[str], src: np.ndarray, dst: np.ndarray,
                weights: np.ndarray | None, *, directed: bool,
                x: np.ndarray | None = None, y: np.ndarray | None = None) -> Graph:
    """A Graph; an undirected edge is stored both ways, (u, v) then (v, u), a self-loop once."""
    if not node_ids:
        raise ReadError(source, "the graph has no nodes", kind="empty")
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    if directed:
        edge_index = np.stack([src, dst]).reshape(2, -1)
        edge_weight = weights
    else:
        edge_index = both_directions(src, dst)
        edge_weight = None if weights is None else np.repeat(weights, np.where(src == dst, 1, 2))
    return Graph(source=source, sample_id=sample_id, num_nodes=len(node_ids), edge_index=edge_index,
                 edge_weight=edge_weight, x=x, y=y, node_ids=np.array(node_ids, dtype=str))
