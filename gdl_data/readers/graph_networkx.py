"""GraphML and GML through networkx: nodes in declaration order, one sample per file."""
from __future__ import annotations

import io
from typing import Iterator

import numpy as np

from gdl_data.domains import Graph, content_id
from gdl_data.errors import ReadError
from gdl_data.readers import extension
from gdl_data.readers.graph_build import build_graph, check_weights, node_attributes
from gdl_data.readers.validate import never_raises, read_raw

WEIGHT = "weight"


@never_raises
def read_networkx(path: str, source: str) -> Iterator[Graph | ReadError]:
    """Yield the Graph of a GraphML or GML file, or a ReadError."""
    data = read_raw(path, source)
    graph = _parse(data, extension(path), source)
    nodes = list(graph.nodes)   # networkx keeps the order in which the file declares them
    index = {node: i for i, node in enumerate(nodes)}
    node_default = graph.graph.get("node_default", {})   # GraphML <default> values
    names = dict.fromkeys(name for _, attrs in graph.nodes(data=True) for name in attrs)
    columns = {name: [attrs.get(name, node_default.get(name)) for _, attrs in graph.nodes(data=True)]
               for name in names}
    x, y = node_attributes(columns, source)
    edges = list(graph.edges(data=True))   # a multigraph's parallel edges each appear
    src = np.array([index[u] for u, _, _ in edges], dtype=np.int64)
    dst = np.array([index[v] for _, v, _ in edges], dtype=np.int64)
    yield build_graph(source, content_id(data), [str(node) for node in nodes], src, dst,
                      _weights(graph, edges, source), directed=graph.is_directed(), x=x, y=y)


def check_graphml_edges(data: bytes, source: str) -> None:
    """Every <edge>'s source and target must be a declared <node>: networkx would invent the
    node (with no attributes), silently changing the graph. GML's parser refuses this itself."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(data)
    declared = {el.get("id") for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "node"}
    edges = (el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "edge")
    for i, edge in enumerate(edges):
        for end in ("source", "target"):
            if edge.get(end) not in declared:
                raise ReadError(source, f"edge {i} ({edge.get('source')} - {edge.get('target')}) has {end} "
                                        f"'{edge.get(end)}', which no <node> declares; add "
                                        f"<node id=\"{edge.get(end)}\"/> or remove the edge",
                                kind="undeclared-node")


def _parse(data: bytes, ext: str, source: str):
    import networkx as nx

    if ext == ".graphml":
        graph = nx.read_graphml(io.BytesIO(data))
        check_graphml_edges(data, source)
        return graph
    text = data.decode("utf-8")
    try:
        return nx.parse_gml(text, label="label")   # nodes named by their `label`, as networkx writes
    except nx.NetworkXError as exc:
        if "has no 'label'" not in str(exc):
            raise
        return nx.parse_gml(text, label="id")      # files whose nodes have only an `id`


def _weights(graph, edges: list, source: str) -> np.ndarray | None:
    """The `weight` edge attribute; where one edge lacks it, networkx's default 1 applies."""
    default = graph.graph.get("edge_default", {}).get(WEIGHT, 1.0)
    if not any(WEIGHT in attrs for _, _, attrs in edges):
        return None
    values = [attrs.get(WEIGHT, default) for _, _, attrs in edges]
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReadError(source, f"edge {i} ({edges[i][0]} - {edges[i][1]}) has weight {value!r}, "
                                    f"not a number", kind="parse-error")
    return check_weights(values, source, lambda i: f"edge {i} ({edges[i][0]} - {edges[i][1]})")
