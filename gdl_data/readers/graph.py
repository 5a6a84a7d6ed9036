"""Graph readers: edge lists (CSV, Parquet) with an optional node table; GraphML and GML.

Conventions, the same for every format:
- Node order: declaration order for GraphML/GML; for an edge list, the node ids sorted (as
  integers when every id is one, else as text). `node_ids` keeps the ids as strings.
- Edge lists are undirected: columns `src`, `dst` and optionally `weight`. An edge written
  twice, in either direction, is one edge (its weights must agree). GraphML/GML say whether
  they are directed; a multigraph keeps its parallel edges.
- An undirected edge is stored both ways, (u, v) then (v, u); a self-loop is kept, once.
- Weights (`weight` column or edge attribute) must be finite and positive. GraphML/GML edges
  without a weight in a file where other edges have one get networkx's default, 1.
- Node table: `NAME.nodes.csv` or `NAME.nodes.parquet` beside `NAME.csv` / `NAME.parquet`,
  with a column `id`. It declares the nodes (isolated ones included): an edge to an id it does
  not list is an error. The edge list and its node table together are the sample (one id).
- Node attributes (node table columns, GraphML/GML node attributes): `y` is the label (text
  labels become class codes 0, 1, ... in sorted order of the label text); every other numeric
  attribute is a feature column of `x`, in natural order of the names (x2 before x10); text
  attributes are ignored.
Rows are counted from 0, the CSV header excluded.
"""
from __future__ import annotations

import io
import os
from typing import Iterator

import numpy as np

from gdl_data.domains import Graph, content_id
from gdl_data.errors import ReadError
from gdl_data.readers import extension, register_reader, register_sidecar
from gdl_data.readers.graph_build import build_graph, check_weights, node_attributes, sort_ids
from gdl_data.readers.graph_networkx import read_networkx
from gdl_data.readers.validate import never_raises, parse_failure, read_raw

EDGE_LIST_EXTENSIONS = (".csv", ".parquet")
NODE_TABLE_SUFFIX = ".nodes"
_ID_COLUMNS = ("src", "dst", "id")


def is_node_table(path: str) -> bool:
    name = os.path.basename(path).lower()
    return any(name.endswith(NODE_TABLE_SUFFIX + ext) for ext in EDGE_LIST_EXTENSIONS)


def node_table_of(path: str) -> str | None:
    """The node table beside an edge list, if there is one."""
    stem = path[: -len(extension(path))]
    for ext in EDGE_LIST_EXTENSIONS:
        if os.path.exists(stem + NODE_TABLE_SUFFIX + ext):
            return stem + NODE_TABLE_SUFFIX + ext
    return None


@never_raises
def read_edge_list(path: str, source: str) -> Iterator[Graph | ReadError]:
    """Yield the Graph of an edge list (and its node table, when there is one), or a ReadError."""
    if is_node_table(path):
        stem = os.path.basename(path)[: -len(NODE_TABLE_SUFFIX + extension(path))]
        raise ReadError(source, f"a node table: it is read together with its edge list {stem}.csv or "
                                f"{stem}.parquet", kind="sidecar")
    data = read_raw(path, source)
    edges = _table(data, path)
    for column in ("src", "dst"):
        if column not in edges.column_names:
            raise ReadError(source, f"an edge list needs columns src, dst (and optionally weight); found "
                                    f"{', '.join(edges.column_names)}", kind="parse-error")
    src_ids, dst_ids = _ids(edges, "src", source), _ids(edges, "dst", source)
    weights = None
    if "weight" in edges.column_names:
        weights = check_weights(_present(edges, "weight", source), source, lambda i: f"edge row {i}")

    table_path = node_table_of(path)
    node_data, x, y = b"", None, None
    if table_path is None:
        node_ids = sort_ids(set(src_ids) | set(dst_ids))
    else:
        table_name = os.path.basename(table_path)
        try:
            node_data = read_raw(table_path, source)
            node_ids, x, y = _node_table(_table(node_data, table_path), source)
        except ReadError as err:   # the sample is the edge list; say which file is wrong
            raise ReadError(source, f"node table {table_name}: {err.detail}", kind=err.kind) from None
        except Exception as exc:  # noqa: BLE001 - pyarrow's errors on a malformed table
            raise parse_failure(source, exc, f"node table {table_name}: cannot parse: ") from None
        _check_declared(src_ids, dst_ids, set(node_ids), source, table_name)
    index = {node: i for i, node in enumerate(node_ids)}
    src = np.array([index[s] for s in src_ids], dtype=np.int64)
    dst = np.array([index[d] for d in dst_ids], dtype=np.int64)
    src, dst, weights = _merge_repeated_edges(src, dst, weights, source)
    yield build_graph(source, content_id(data + node_data), node_ids, src, dst, weights,
                      directed=False, x=x, y=y)


def _table(data: bytes, path: str):
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    if path.lower().endswith(".parquet"):
        return pyarrow.parquet.read_table(io.BytesIO(data))
    # ids as text, exactly as written (pyarrow ignores the types of absent columns); only an
    # empty field is missing, so that "nan" stays a number and is reported as one
    options = pyarrow.csv.ConvertOptions(column_types={name: pa.string() for name in _ID_COLUMNS},
                                         null_values=[""], strings_can_be_null=True)
    return pyarrow.csv.read_csv(io.BytesIO(data), convert_options=options)


def _present(table, column: str, source: str) -> list:
    values = table.column(column).to_pylist()
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        raise ReadError(source, f"column '{column}' is empty in {len(missing)} rows (first: row {missing[0]})",
                        kind="parse-error")
    return values


def _ids(table, column: str, source: str) -> list[str]:
    return [str(v) for v in _present(table, column, source)]


def _node_table(nodes, source: str) -> tuple[list[str], np.ndarray | None, np.ndarray | None]:
    """(sorted node ids, x, y) from a node table; attribute rows follow the sorted ids."""
    if "id" not in nodes.column_names:
        raise ReadError(source, f"the node table needs a column 'id'; found {', '.join(nodes.column_names)}",
                        kind="parse-error")
    ids = _ids(nodes, "id", source)
    row_of = {}
    for row, node in enumerate(ids):
        if node in row_of:
            raise ReadError(source, f"the node table lists node '{node}' twice (rows {row_of[node]} and {row})",
                            kind="duplicate-node")
        row_of[node] = row
    node_ids = sort_ids(ids)
    order = [row_of[node] for node in node_ids]
    columns = {name: [values[row] for row in order]
               for name in nodes.column_names if name != "id"
               for values in [nodes.column(name).to_pylist()]}
    x, y = node_attributes(columns, source)
    return node_ids, x, y


def _check_declared(src_ids: list[str], dst_ids: list[str], declared: set[str], source: str,
                    table_name: str) -> None:
    for row, (s, d) in enumerate(zip(src_ids, dst_ids)):
        for node in (s, d):
            if node not in declared:
                raise ReadError(source, f"edge row {row} ({s} - {d}) uses node '{node}', which the node "
                                        f"table {table_name} does not declare", kind="undeclared-node")


def _merge_repeated_edges(src, dst, weights, source: str):
    """Keep the first row of each unordered node pair; a repeat must not change the weight."""
    if len(src) == 0:
        return src, dst, weights
    pair = np.minimum(src, dst) * (int(max(src.max(), dst.max())) + 1) + np.maximum(src, dst)
    _, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
    if weights is not None:
        conflict = np.flatnonzero(weights != weights[first][inverse])
        if len(conflict):
            row = int(conflict[0])
            raise ReadError(source, f"edge row {row} repeats the edge of row {int(first[inverse[row]])} "
                                    f"with another weight ({weights[row]} vs {weights[first[inverse[row]]]})",
                            kind="conflicting-weights")
    keep = np.sort(first)
    return src[keep], dst[keep], None if weights is None else weights[keep]


register_reader("graph", EDGE_LIST_EXTENSIONS, read_edge_list)
register_reader("graph", (".graphml", ".gml"), read_networkx)
register_sidecar("graph", is_node_table)
