"""Graph readers on networkx's classic graphs written by networkx, pandas and pyarrow.

Reference: the networkx graph itself. Every test compares the sample's weighted adjacency,
rebuilt from `edge_index`/`edge_weight`, with `networkx.to_numpy_array` in the documented node
order, so edges, directions and weights are all checked at once.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from gdl_data.readers import is_sidecar
from reader_checks import read_error, read_samples


def one_graph(path):
    (graph,) = read_samples(path, "graph")
    assert graph.edge_index.dtype == np.int64 and graph.edge_index.shape[0] == 2
    return graph


def adjacency(graph) -> np.ndarray:
    dense = np.zeros((graph.num_nodes, graph.num_nodes))
    weights = np.ones(graph.edge_index.shape[1]) if graph.edge_weight is None else graph.edge_weight
    np.add.at(dense, (graph.edge_index[0], graph.edge_index[1]), weights)
    return dense


def nx_adjacency(reference: nx.Graph, order, weight="weight") -> np.ndarray:
    return nx.to_numpy_array(reference, nodelist=list(order), weight=weight)


@pytest.fixture()
def karate():
    graph = nx.karate_club_graph()
    for _, attrs in graph.nodes(data=True):
        attrs["y"] = int(attrs["club"] == "Officer")
    return graph


def test_graphml_karate_club_in_declaration_order(tmp_path, karate):
    nx.write_graphml(karate, tmp_path / "karate.graphml")
    graph = one_graph(tmp_path / "karate.graphml")
    assert graph.num_nodes == 34 and list(graph.node_ids) == [str(n) for n in karate.nodes]
    np.testing.assert_array_equal(adjacency(graph), nx_adjacency(karate, karate.nodes))
    np.testing.assert_array_equal(graph.y, [karate.nodes[n]["y"] for n in karate.nodes])
    assert graph.x is None   # 'club' is text, not a feature


def test_gml_les_miserables_keeps_declaration_order_and_weights(tmp_path):
    reference = nx.les_miserables_graph()
    nx.write_gml(reference, tmp_path / "lesmis.gml")
    graph = one_graph(tmp_path / "lesmis.gml")
    assert list(graph.node_ids) == list(reference.nodes)   # 'Napoleon', 'Myriel', ... as declared
    np.testing.assert_array_equal(adjacency(graph), nx_adjacency(reference, reference.nodes))


def test_csv_edge_list_florentine_sorted_ids_both_directions(tmp_path):
    reference = nx.florentine_families_graph()
    nx.to_pandas_edgelist(reference, source="src", target="dst").to_csv(tmp_path / "flo.csv", index=False)
    graph = one_graph(tmp_path / "flo.csv")
    assert list(graph.node_ids) == sorted(reference.nodes)
    assert graph.edge_weight is None and graph.edge_index.shape[1] == 2 * reference.number_of_edges()
    np.testing.assert_array_equal(adjacency(graph), nx_adjacency(reference, sorted(reference.nodes)))


def test_parquet_edge_list_with_node_table(tmp_path, karate):
    edges = nx.to_pandas_edgelist(karate, source="src", target="dst")
    edges.sample(frac=1.0, random_state=0).to_parquet(tmp_path / "karate.parquet", index=False)
    degree = dict(karate.degree())
    nodes = pd.DataFrame({"id": list(karate.nodes)[::-1], "club": "?", "x10": 1.5,
                          "x2": [degree[n] for n in list(karate.nodes)[::-1]],
                          "y": [karate.nodes[n]["y"] for n in list(karate.nodes)[::-1]]})
    nodes.to_parquet(tmp_path / "karate.nodes.parquet", index=False)
    graph = one_graph(tmp_path / "karate.parquet")
    order = sorted(karate.nodes)   # integer ids sort as integers
    assert list(graph.node_ids) == [str(n) for n in order]
    np.testing.assert_array_equal(adjacency(graph), nx_adjacency(karate, order))
    np.testing.assert_array_equal(graph.x, [[degree[n], 1.5] for n in order])   # x2 before x10
    np.testing.assert_array_equal(graph.y, [karate.nodes[n]["y"] for n in order])
    assert is_sidecar(str(tmp_path / "karate.nodes.parquet"), "graph")
    read_error(tmp_path / "karate.nodes.parquet", "graph", "sidecar", mentions=("karate.parquet",))


def test_node_table_declares_isolated_nodes_and_text_labels(tmp_path):
    (tmp_path / "g.csv").write_text("src,dst,weight\nb,a,2\na,b,2\nc,c,0.5\n")
    (tmp_path / "g.nodes.csv").write_text("id,y\nc,cat\nb,dog\nd,cat\na,ant\n")
    graph = one_graph(tmp_path / "g.csv")
    assert list(graph.node_ids) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(graph.y, [0, 2, 1, 1])   # classes ant, cat, dog by name
    # the repeated edge a-b is one edge; the self-loop c-c appears once
    np.testing.assert_array_equal(graph.edge_index, [[1, 0, 2], [0, 1, 2]])
    np.testing.assert_array_equal(graph.edge_weight, [2, 2, 0.5])


def test_directed_graphml_keeps_one_direction(tmp_path):
    reference = nx.gn_graph(12, seed=3)   # a growing-network tree, directed
    for u, v in reference.edges:
        reference.edges[u, v]["weight"] = 1.0 + u + v
    nx.write_graphml(reference, tmp_path / "tree.graphml")
    graph = one_graph(tmp_path / "tree.graphml")
    assert graph.edge_index.shape[1] == reference.number_of_edges()
    np.testing.assert_array_equal(adjacency(graph), nx_adjacency(reference, reference.nodes))


def test_sample_id_covers_the_node_table(tmp_path):
    (tmp_path / "g.csv").write_text("src,dst\n1,2\n")
    before = one_graph(tmp_path / "g.csv").sample_id
    (tmp_path / "g.nodes.csv").write_text("id,x\n1,0.5\n2,1.5\n")
    assert one_graph(tmp_path / "g.csv").sample_id != before


# ---- broken input ----

@pytest.mark.parametrize("weight,kind", [("-1", "negative-weight"), ("nan", "non-finite-weight"),
                                         ("0", "zero-weight")])
def test_bad_weights_in_edge_list(tmp_path, weight, kind):
    (tmp_path / "w.csv").write_text(f"src,dst,weight\n1,2,1.0\n2,3,{weight}\n")
    read_error(tmp_path / "w.csv", "graph", kind, mentions=("edge row 1",))


def test_negative_weight_in_graphml(tmp_path, karate):
    karate.edges[0, 1]["weight"] = -4
    nx.write_graphml(karate, tmp_path / "k.graphml")
    read_error(tmp_path / "k.graphml", "graph", "negative-weight", mentions=("(0 - 1)",))


def test_edge_to_undeclared_node(tmp_path):
    (tmp_path / "g.csv").write_text("src,dst\n1,2\n2,7\n")
    (tmp_path / "g.nodes.csv").write_text("id\n1\n2\n3\n")
    read_error(tmp_path / "g.csv", "graph", "undeclared-node", mentions=("edge row 1", "'7'", "g.nodes.csv"))


def test_node_table_problems(tmp_path):
    (tmp_path / "dup.csv").write_text("src,dst\n1,2\n")
    (tmp_path / "dup.nodes.csv").write_text("id\n1\n2\n1\n")
    read_error(tmp_path / "dup.csv", "graph", "duplicate-node", mentions=("dup.nodes.csv", "'1'", "rows 0 and 2"))
    (tmp_path / "nan.csv").write_text("src,dst\n1,2\n")
    (tmp_path / "nan.nodes.csv").write_text("id,x\n1,0.5\n2,nan\n")
    read_error(tmp_path / "nan.csv", "graph", "non-finite-features", mentions=("nan.nodes.csv", "node 1"))
    (tmp_path / "hole.csv").write_text("src,dst\n1,2\n")
    (tmp_path / "hole.nodes.csv").write_text("id,x,y\n1,0.5,1\n2,,0\n")
    read_error(tmp_path / "hole.csv", "graph", "missing-attribute", mentions=("'x'", "node 1"))
    (tmp_path / "junk.csv").write_text("src,dst\n1,2\n")
    (tmp_path / "junk.nodes.parquet").write_bytes(b"PAR1 not really parquet")
    read_error(tmp_path / "junk.csv", "graph", "parse-error", mentions=("junk.nodes.parquet",))


def test_repeated_edge_with_another_weight(tmp_path):
    (tmp_path / "g.csv").write_text("src,dst,weight\n1,2,1\n2,1,3\n")
    read_error(tmp_path / "g.csv", "graph", "conflicting-weights", mentions=("row 1", "row 0"))


def test_unusable_files(tmp_path):
    (tmp_path / "cols.csv").write_text("from,to\n1,2\n")
    read_error(tmp_path / "cols.csv", "graph", "parse-error", mentions=("src, dst", "from, to"))
    (tmp_path / "garbage.graphml").write_bytes(bytes(range(7, 250)) * 20)
    read_error(tmp_path / "garbage.graphml", "graph", "parse-error")
    (tmp_path / "dangling.gml").write_text('graph [ node [ id 0 label "a" ] edge [ source 0 target 5 ] ]')
    read_error(tmp_path / "dangling.gml", "graph", "parse-error", mentions=("5",))
    (tmp_path / "empty.parquet").write_bytes(b"")
    read_error(tmp_path / "empty.parquet", "graph", "empty")
