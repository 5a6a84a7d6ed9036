"""`geodesics` against references no code here computes: great circles on the sphere (analytic
and healpy's angdist), straight lines in the plane, potpourri3d and pygeodesic called directly on
pyvista's bundled meshes, networkx shortest paths, hand-worked farthest-point orders."""
import os

import networkx as nx
import numpy as np
import potpourri3d
import pygeodesic.geodesic as pygeodesic
import pytest
import trimesh

from gdl_data.errors import OpError, SpecError
from gdl_data.ops import get_op
from gdl_data.ops.distances import mesh_distance_from
from gdl_data.ops.sampling import farthest_point_sampling
from surfaces import flat_grid, icosphere, mesh_record, sphere_record

GEODESICS = get_op("geodesics")


def run(record, **params):
    return GEODESICS.run(record, GEODESICS.parse_params(params, record["domain"]))


def great_circle(pos, sources):
    return np.arccos(np.clip(pos[sources] @ pos.T, -1.0, 1.0))


def pyvista_mesh(name):
    """A real mesh that ships with pyvista (no network)."""
    import pyvista.examples

    folder = os.path.dirname(pyvista.examples.__file__)
    mesh = trimesh.load(os.path.join(folder, name), process=False)
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


# --- meshes ---------------------------------------------------------------------------------

def test_heat_and_exact_on_icosphere_match_great_circles():
    pos, faces = icosphere(4)
    heat = run(mesh_record(pos, faces), sources=[0, 700, 2000])
    assert heat["geo_dist"].dtype == np.float32 and heat["geo_dist"].shape == (3, len(pos))
    reference = great_circle(pos, [0, 700, 2000])
    # Heat method at 2562 vertices: ≈ 0.03 max (FIELD-NOTES: ≈ 0.025 at moderate resolution).
    assert np.abs(heat["geo_dist"] - reference).max() < 0.04
    exact = run(mesh_record(pos, faces), sources=[0, 700, 2000], method="exact")
    # Exact polyhedral distances run along the inscribed polyhedron: a little shorter.
    assert np.abs(exact["geo_dist"] - reference).max() < 0.005


def test_flat_grid_geodesics_are_straight_lines():
    pos, faces, _ = flat_grid(12, 10, jitter=0.3)
    euclidean = np.linalg.norm(pos[[0, 37]][:, None] - pos[None], axis=2)
    exact = run(mesh_record(pos, faces), sources=[0, 37], method="exact")["geo_dist"]
    np.testing.assert_allclose(exact, euclidean, atol=1e-5)      # float32 storage
    heat = run(mesh_record(pos, faces), sources=[0, 37])["geo_dist"]
    error = np.abs(heat - euclidean)
    # Heat-method accuracy on this coarse grid (measured: median 3.4 % relative, worst 0.81 of a
    # 14.2 diameter): smoothing near the source, the Neumann boundary near the border.
    assert np.median(error[euclidean > 0] / euclidean[euclidean > 0]) < 0.05
    assert error.max() < 0.07 * euclidean.max()


def test_heat_matches_potpourri3d_called_directly_on_a_real_mesh():
    pos, faces = pyvista_mesh("nut.ply")                        # 523 vertices, one component
    ours = run(mesh_record(pos, faces), sources=[0, 100, 400])["geo_dist"]
    solver = potpourri3d.MeshHeatMethodDistanceSolver(pos, faces)
    direct = np.array([solver.compute_distance(i) for i in (0, 100, 400)])
    np.testing.assert_allclose(ours, direct, rtol=1e-5, atol=1e-5 * direct.max())


def test_exact_matches_pygeodesic_called_directly_on_a_real_mesh():
    pos, faces = pyvista_mesh("nut.ply")
    ours = run(mesh_record(pos, faces), sources=[0, 300], method="exact")["geo_dist"]
    algorithm = pygeodesic.PyGeodesicAlgorithmExact(pos, faces)
    direct = np.array([algorithm.geodesicDistances(np.array([i]), None)[0] for i in (0, 300)])
    np.testing.assert_allclose(ours, direct, rtol=1e-5, atol=1e-5 * direct.max())
    heat = run(mesh_record(pos, faces), sources=[0, 300])["geo_dist"]
    assert np.median(np.abs(heat - direct)[direct > 0] / direct[direct > 0]) < 0.05


def test_a_mesh_with_many_components_is_inf_exactly_outside_the_sources_component():
    pos, faces = pyvista_mesh("ant.ply")                        # 486 vertices, 15 components
    labels = trimesh.graph.connected_component_labels(trimesh.graph.face_adjacency(faces),
                                                      node_count=len(faces))
    vertex_component = np.empty(len(pos), int)
    vertex_component[faces.ravel()] = np.repeat(labels, 3)
    for method in ("heat", "exact"):
        out = run(mesh_record(pos, faces), sources=[0, 250], method=method)
        for source, row in zip(out["geo_sources"], out["geo_dist"]):
            same = vertex_component == vertex_component[source]
            assert np.all(np.isfinite(row[same])) and np.all(np.isinf(row[~same]))


@pytest.mark.parametrize("scale", [1e-6, 1e12])
@pytest.mark.parametrize("method", ["heat", "exact"])
def test_scaled_mesh_scales_distances(scale, method):
    pos, faces = icosphere(3)
    unit = run(mesh_record(pos, faces), sources=[0, 321], method=method)["geo_dist"]
    scaled = run(mesh_record(pos * scale + 7 * scale, faces), sources=[0, 321],
                 method=method)["geo_dist"]
    np.testing.assert_allclose(scaled / scale, unit, rtol=1e-5, atol=1e-6)


def test_unreachable_vertices_are_inf_and_sampling_visits_every_component():
    pos, faces = icosphere(2)
    n = len(pos)
    record = mesh_record(np.vstack([pos, pos + [4.0, 0, 0], [[9.0, 9, 9]]]),
                         np.vstack([faces, faces + n]))        # two spheres + a loose vertex
    out = run(record, sources=3)
    assert out["geo_sources"][0] == 0
    assert n <= out["geo_sources"][1] < 2 * n                   # the other sphere comes second
    assert out["geo_sources"][2] < 2 * n                        # the loose vertex is never a source
    dist = out["geo_dist"]
    assert np.all(np.isinf(dist[0, n:])) and np.all(np.isfinite(dist[0, :n]))
    assert np.all(np.isinf(dist[1, :n])) and np.isinf(dist[1, -1])
    loose = run(record, sources=[2 * n])["geo_dist"][0]        # from the loose vertex itself
    assert loose[-1] == 0 and np.all(np.isinf(loose[:-1]))


def test_point_cloud_heat_matches_potpourri3d_and_great_circles():
    pos, _ = icosphere(3)
    out = run(mesh_record(pos, np.zeros((0, 3))), sources=[0, 200])["geo_dist"]
    solver = potpourri3d.PointCloudHeatSolver(pos)
    direct = np.array([solver.compute_distance(i) for i in (0, 200)])
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-5)
    assert np.abs(out - great_circle(pos, [0, 200])).max() < 0.06


def test_refusals_name_the_limit_and_the_alternative():
    pos, faces = icosphere(3)                                   # 642 vertices
    record = mesh_record(pos, faces, source="ball.obj")
    with pytest.raises(OpError, match=r"ball\.obj.*max_vertices_for_exact=500.*method: heat"):
        run(record, method="exact", max_vertices_for_exact=500)
    with pytest.raises(OpError, match=r"max_points_for_all=100.*sources: <int>"):
        run(record, sources="all", max_points_for_all=100)
    with pytest.raises(OpError, match="out of range"):
        run(record, sources=[0, 642])
    with pytest.raises(OpError, match="at least 31 points"):
        run(mesh_record(pos[:20], np.zeros((0, 3))))


@pytest.mark.parametrize("params, domain, message", [
    ({"sources": 0}, "mesh", "write e.g. sources: 8"),
    ({"sources": [1, -2]}, "mesh", r"write e.g. sources: \[0, 10, 42\]"),
    ({"sources": "some"}, "graph", "write e.g. sources: 8"),
    ({"method": "fast"}, "mesh", "write e.g. method: heat"),
    ({"method": "exact"}, "graph", "does not apply to graph"),
    ({"heat_time": -1}, "mesh", "write e.g. heat_time"),
    ({"source": 3}, "mesh", "did you mean 'sources'"),
])
def test_bad_parameters_say_what_to_write(params, domain, message):
    with pytest.raises(SpecError, match=message):
        GEODESICS.parse_params(params, domain)


# --- graphs, molecules, sphere --------------------------------------------------------------

def test_weighted_graph_distances_match_networkx_dijkstra():
    graph = nx.gnm_random_graph(60, 150, seed=3)
    rng = np.random.default_rng(3)
    for u, v in graph.edges():
        graph[u][v]["weight"] = float(rng.uniform(0.1, 5.0))
    graph.add_nodes_from([60, 61])                              # isolated: unreachable
    src, dst, weight = zip(*graph.edges(data="weight"))
    record = {"domain": "graph", "source": "g.graphml", "num_nodes": 62,
              "edge_index": np.array([src + dst, dst + src]), "edge_weight": np.array(weight * 2)}
    out = run(record, sources=[0, 5, 60])
    for row, source in enumerate([0, 5, 60]):
        lengths = nx.single_source_dijkstra_path_length(graph, source)
        expected = np.array([lengths.get(node, np.inf) for node in range(62)])
        np.testing.assert_allclose(out["geo_dist"][row], expected, rtol=1e-6)


def test_molecule_hops_match_networkx_on_the_bond_graph():
    bonds = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (2, 6), (6, 7)]   # ring + tail
    graph = nx.Graph(bonds)
    graph.add_node(8)                                           # a counter-ion: unbonded
    record = {"domain": "molecule", "source": "m.sdf#0", "pos": np.zeros((9, 3)),
              "z": np.full(9, 6), "bond_index": np.array(bonds + [(b, a) for a, b in bonds]).T}
    out = run(record, sources="all")
    for source in range(9):
        lengths = nx.single_source_shortest_path_length(graph, source)
        expected = [lengths.get(node, np.inf) for node in range(9)]
        np.testing.assert_array_equal(out["geo_dist"][source], expected)


def test_sphere_great_circles_match_healpy_and_second_source_is_the_antipode():
    import healpy

    nside = 4
    record = sphere_record(nside)
    out = run(record, sources=2)
    reference = healpy.rotator.angdist(record["pos"][0], record["pos"].T)
    np.testing.assert_allclose(out["geo_dist"][0], reference, atol=1e-6)
    assert out["geo_sources"].tolist() == [0, healpy.vec2pix(nside, *-record["pos"][0])]


def test_farthest_point_order_on_a_line_is_the_hand_worked_one():
    points = np.arange(11.0)[:, None]
    # 0, then 10 (farthest), 5 (middle), then 2 and 7: ties (2 vs 3, 7 vs 8) go to the lower index.
    assert farthest_point_sampling(points, 5).tolist() == [0, 10, 5, 2, 7]
    assert farthest_point_sampling(points, 50).tolist()[:3] == [0, 10, 5]
    assert len(farthest_point_sampling(points, 50)) == 11


def test_mesh_sources_are_deterministic_and_spread():
    pos, faces = icosphere(2)
    first = run(mesh_record(pos, faces), sources=6)
    second = run(mesh_record(pos, faces), sources=6)
    assert first["geo_sources"].tolist() == second["geo_sources"].tolist()
    assert first["geo_dist"].tobytes() == second["geo_dist"].tobytes()
    # The first two are antipodal; none of the six closer than 2π/5 (an octahedron would give
    # π/2, the icosphere's lattice only allows 2π/5 here); 6 random vertices are far closer.
    chosen = pos[first["geo_sources"]]
    pairwise = great_circle(chosen, range(6))
    assert pairwise[0, 1] == pytest.approx(np.pi, abs=1e-9)
    assert pairwise[~np.eye(6, dtype=bool)].min() > 0.39 * np.pi


def test_exact_distance_function_is_usable_directly():
    pos, faces = icosphere(3)
    distance_from, candidates = mesh_distance_from(pos, faces, "exact")
    assert candidates.all()
    np.testing.assert_allclose(distance_from(5), great_circle(pos, [5])[0], atol=0.01)
