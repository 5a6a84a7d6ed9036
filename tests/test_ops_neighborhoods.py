"""`neighborhoods`: edge sets against healpy / brute force / trimesh / networkx, and the
connection and log map against flat-space and spherical geometry (Gauss–Bonnet)."""
import healpy
import networkx as nx
import numpy as np
import pygeodesic.geodesic as pygeodesic
import pytest
import trimesh

from gdl_data.errors import OpError, SpecError
from gdl_data.ops import get_op
from surfaces import (cylinder, edge_lookup, flat_grid, icosphere, mesh_record, run_op,
                      sphere_record, wrap)


def neighbour_sets(edge_index, n):
    return [set(edge_index[1, edge_index[0] == i].tolist()) for i in range(n)]


def brute_force_distances(pos):
    return np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)


def loop_sum(transport, lookup, loop):
    return sum(transport[lookup[(loop[i], loop[(i + 1) % len(loop)])]] for i in range(len(loop)))


# ------------------------------------------------------------------ edge sets

@pytest.mark.parametrize("nside", [1, 2, 8])
def test_healpix_neighbours_equal_healpy_as_sets(nside):
    out = run_op("neighborhoods", sphere_record(nside))
    n = 12 * nside * nside
    reference = healpy.get_all_neighbours(nside, np.arange(n))
    ours = neighbour_sets(out["edge_index"], n)
    for pixel in range(n):
        assert ours[pixel] == set(reference[:, pixel][reference[:, pixel] >= 0].tolist()) - {pixel}
    if nside > 1:   # the pixels where three base pixels meet have 7 neighbours
        assert 7 in {len(s) for s in ours}


def test_sphere_disc_equals_healpy_query_disc():
    record = sphere_record(4)
    out = run_op("neighborhoods", record, disc=0.4)
    ours = neighbour_sets(out["edge_index"], len(record["pos"]))
    for pixel, centre in enumerate(record["pos"]):
        assert ours[pixel] == set(healpy.query_disc(4, centre, 0.4).tolist()) - {pixel}


def test_knn_equals_brute_force_sort_both_directions():
    pos = np.random.default_rng(0).random((60, 3))
    out = run_op("neighborhoods", mesh_record(pos, np.zeros((0, 3))), knn=5)
    nearest = np.argsort(brute_force_distances(pos), axis=1)[:, 1:6]
    expected = set()
    for i, row in enumerate(nearest):
        expected |= {(i, int(j)) for j in row} | {(int(j), i) for j in row}
    assert set(map(tuple, out["edge_index"].T.tolist())) == expected


def test_radius_equals_brute_force_for_molecule_and_point_cloud():
    pos = 3.0 * np.random.default_rng(1).random((50, 3))
    d = brute_force_distances(pos)
    expected = {(i, j) for i, j in zip(*np.nonzero(d <= 1.2)) if i != j}
    molecule = {"domain": "molecule", "source": "m", "pos": pos, "z": np.ones(50, dtype=int),
                "bond_index": np.zeros((2, 0), dtype=int)}
    for record in (molecule, mesh_record(pos, np.zeros((0, 3)))):
        out = run_op("neighborhoods", record, radius=1.2)
        assert set(map(tuple, out["edge_index"].T.tolist())) == expected
        np.testing.assert_allclose(out["edge_dist"], d[tuple(out["edge_index"])], rtol=1e-12)


def test_molecule_default_is_its_bonds_both_directions():
    pos = np.array([[0.0, 0, 0], [1.1, 0, 0], [1.5, 1.0, 0]])
    record = {"domain": "molecule", "source": "m", "pos": pos, "z": np.array([6, 1, 8]),
              "bond_index": np.array([[0, 2], [1, 1]])}       # one direction only in the record
    out = run_op("neighborhoods", record)
    assert out["edge_index"].T.tolist() == [[0, 1], [1, 0], [1, 2], [2, 1]]
    np.testing.assert_allclose(out["edge_dist"], [1.1, 1.1, np.hypot(0.4, 1.0), np.hypot(0.4, 1.0)])
    assert "transport" not in out and "logmap" not in out


def test_mesh_one_ring_equals_trimesh_edges():
    pos, faces = icosphere(2)
    out = run_op("neighborhoods", mesh_record(pos, faces))
    unique = trimesh.Trimesh(pos, faces, process=False).edges_unique
    expected = set(map(tuple, unique.tolist())) | set(map(tuple, unique[:, ::-1].tolist()))
    assert set(map(tuple, out["edge_index"].T.tolist())) == expected
    assert out["edge_index"].dtype == np.int64


def test_mesh_rings_equal_networkx_hop_balls():
    pos, faces = icosphere(1)
    graph = nx.Graph(trimesh.Trimesh(pos, faces, process=False).edges_unique.tolist())
    out = run_op("neighborhoods", mesh_record(pos, faces), rings=2)
    ours = neighbour_sets(out["edge_index"], len(pos))
    for v in range(len(pos)):
        assert ours[v] == set(nx.single_source_shortest_path_length(graph, v, cutoff=2)) - {v}


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_graph_hops_equal_networkx(hops):
    karate = nx.karate_club_graph()
    edges = np.array(list(karate.edges())).T
    record = {"domain": "graph", "source": "karate", "num_nodes": 34,
              "edge_index": np.concatenate([edges, edges[::-1]], axis=1)}
    out = run_op("neighborhoods", record, hops=hops)
    found = {(int(a), int(b)): d for (a, b), d in zip(out["edge_index"].T, out["edge_dist"])}
    expected = {(s, t): d for s in karate for t, d in
                nx.single_source_shortest_path_length(karate, s, cutoff=hops).items() if t != s}
    assert found == expected


def test_graph_default_keeps_its_own_edges_in_order():
    edge_index = np.array([[2, 0, 1, 0], [0, 1, 2, 2]])
    record = {"domain": "graph", "source": "g", "num_nodes": 3, "edge_index": edge_index,
              "edge_weight": np.array([0.5, 1.0, 2.0, 3.0])}
    out = run_op("neighborhoods", record)
    np.testing.assert_array_equal(out["edge_index"], edge_index)   # edge_weight still lines up
    np.testing.assert_array_equal(out["edge_dist"], np.ones(4))


def test_directed_graph_hops_follow_edge_direction():
    chain = nx.DiGraph([(0, 1), (1, 2), (2, 3)])
    record = {"domain": "graph", "source": "chain", "num_nodes": 4,
              "edge_index": np.array(list(chain.edges())).T}
    out = run_op("neighborhoods", record, hops=2)
    expected = {(s, t) for s in chain for t in nx.single_source_shortest_path_length(chain, s, 2)
                if t != s}
    assert set(map(tuple, out["edge_index"].T.tolist())) == expected


def test_geodesic_radius_matches_exact_polyhedral_geodesics():
    pos, faces = icosphere(2)
    out = run_op("neighborhoods", mesh_record(pos, faces), geodesic_radius=0.5, distance="geodesic")
    exact = pygeodesic.PyGeodesicAlgorithmExact(pos, faces)
    sample = np.random.default_rng(0).choice(out["edge_index"].shape[1], 40, replace=False)
    truth = np.array([exact.geodesicDistance(*map(int, out["edge_index"][:, e]))[0] for e in sample])
    # the heat method's error at this resolution (162 vertices): ≈ 0.045 absolute
    assert np.abs(out["edge_dist"][sample] - truth).max() < 0.06
    assert out["edge_dist"].max() < 0.5 + 1e-9


# ------------------------------------------------------------------ transport

def test_transport_is_antisymmetric_on_a_mesh():
    pos, faces = icosphere(2)
    out = run_op("neighborhoods", mesh_record(pos, faces))
    lookup = edge_lookup(out["edge_index"])
    reverse = [lookup[(b, a)] for a, b in out["edge_index"].T.tolist()]
    assert np.abs(wrap(out["transport"] + out["transport"][reverse])).max() < 1e-12


def test_transport_across_a_fold_rotates_about_the_edge():
    # Opposite normals have no unique minimal rotation; the rule is the half-turn about the edge.
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    frames = np.array([np.eye(3), [[0.0, 1, 0], [1, 0, 0], [0, 0, -1]]])   # e1 = y at vertex 1
    out = run_op("neighborhoods", mesh_record(pos, np.zeros((0, 3)), frames=frames), knn=1)
    # the half-turn about x carries e1 = x to x, which is the target's e2: +90°; back: −90°
    np.testing.assert_allclose(out["transport"], [np.pi / 2, -np.pi / 2], atol=1e-12)


def test_transport_around_flat_loops_is_identity_with_any_gauge():
    pos, faces, _ = flat_grid(jitter=0.4)
    angle = np.random.default_rng(2).uniform(0, 2 * np.pi, len(pos))   # an arbitrary gauge per vertex
    frames = np.zeros((len(pos), 3, 3))
    frames[:, 0, :2] = np.stack([np.cos(angle), np.sin(angle)], 1)
    frames[:, 1, :2] = np.stack([-np.sin(angle), np.cos(angle)], 1)
    frames[:, 2, 2] = 1.0
    out = run_op("neighborhoods", mesh_record(pos, faces, frames=frames))
    lookup = edge_lookup(out["edge_index"])
    assert max(abs(wrap(loop_sum(out["transport"], lookup, f))) for f in faces.tolist()) < 1e-12
    boundary = [0, 1, 2, 3, 4, 5, 6, 13, 20, 27, 34, 41, 40, 39, 38, 37, 36, 35, 28, 21, 14, 7]
    assert abs(wrap(loop_sum(out["transport"], lookup, boundary))) < 1e-12
    # and on an edge the transport is the change of gauge: angle(source) − angle(target)
    src, dst = out["edge_index"]
    assert np.abs(wrap(out["transport"] - (angle[src] - angle[dst]))).max() < 1e-12


def test_transport_on_a_cylinder_has_no_holonomy():
    pos, faces, rings = cylinder()        # intrinsically flat, extrinsically curved
    out = run_op("neighborhoods", mesh_record(pos, faces))
    lookup = edge_lookup(out["edge_index"])
    assert max(abs(wrap(loop_sum(out["transport"], lookup, f))) for f in faces.tolist()) < 1e-12
    assert abs(wrap(loop_sum(out["transport"], lookup, rings[2].tolist()))) < 1e-12


@pytest.mark.parametrize("ring", [1, 3, 5, 8])
def test_sphere_holonomy_equals_enclosed_area(ring):
    nside = 8
    record = sphere_record(nside)
    out = run_op("neighborhoods", record)
    # ring `ring` of the RING scheme (4·ring pixels in the polar cap), in east-going order
    loop = list(range(2 * ring * (ring - 1), 2 * ring * (ring + 1)))
    holonomy = loop_sum(out["transport"], edge_lookup(out["edge_index"]), loop)
    # Area of the geodesic polygon through the ring's pixel centres, as a fan of spherical
    # triangles from the north pole (Van Oosterom & Strackee 1983).
    pole, pos = np.array([0.0, 0.0, 1.0]), record["pos"]
    area = sum(2 * np.arctan2(pole @ np.cross(pos[a], pos[b]), 1 + pole @ pos[a] + pos[a] @ pos[b]
                              + pos[b] @ pole) for a, b in zip(loop, loop[1:] + loop[:1]))
    assert abs(wrap(holonomy - area)) < 1e-12
    # The latitude circle's cap, 2π(1 − cos θ): the inscribed N-gon misses ≈ (2π/N)²/6 of it.
    cap = 2 * np.pi * (1 - pos[loop[0], 2])
    assert 0 < cap - wrap(holonomy) < 1.1 * (2 * np.pi / len(loop)) ** 2 / 6 * cap


# ------------------------------------------------------------------ log map

def test_flat_logmap_is_the_edge_vector_in_frame_coordinates():
    pos, faces, _ = flat_grid(jitter=0.4)
    for params in ({}, {"rings": 2}, {"knn": 6}, {"radius": 1.5}):
        out = run_op("neighborhoods", mesh_record(pos, faces), **params)
        src, dst = out["edge_index"]
        # the tangent rule on the +z plane gives e1 = x, e2 = y
        np.testing.assert_allclose(out["logmap"], (pos[dst] - pos[src])[:, :2], atol=1e-12)
        np.testing.assert_allclose(out["edge_dist"], np.linalg.norm(pos[dst] - pos[src], axis=1))


def test_sphere_logmap_equals_the_analytic_log_map():
    record = sphere_record(4)
    out = run_op("neighborhoods", record, disc=0.6, distance="geodesic")
    frames = run_op("frames", record)["frames"]
    p, q = record["pos"][out["edge_index"][0]], record["pos"][out["edge_index"][1]]
    theta = np.arccos(np.clip(np.einsum("ij,ij->i", p, q), -1, 1))
    log3d = (theta / np.sin(theta))[:, None] * (q - np.cos(theta)[:, None] * p)   # log_p(q)
    expected = np.einsum("eij,ej->ei", frames[out["edge_index"][0], :2], log3d)
    np.testing.assert_allclose(out["logmap"], expected, atol=1e-9)
    np.testing.assert_allclose(out["edge_dist"], theta, atol=1e-7)


def test_vector_heat_logmap_on_icosphere_is_close_to_analytic():
    pos, faces = icosphere(3)
    record = mesh_record(pos, faces)
    frames = run_op("frames", record)["frames"]
    errors = {}
    for method in ("vector_heat", "projection"):
        out = run_op("neighborhoods", record, rings=3, logmap=method)
        src, dst = out["edge_index"]
        theta = np.arccos(np.clip(np.einsum("ij,ij->i", pos[src], pos[dst]), -1, 1))
        log3d = (theta / np.sin(theta))[:, None] * (pos[dst] - np.cos(theta)[:, None] * pos[src])
        expected = np.einsum("eij,ej->ei", frames[src, :2], log3d)
        errors[method] = np.abs(out["logmap"] - expected).max()
    # measured at 642 vertices: vector heat 2.7e-3, projection (chord length) 4.7e-3
    assert errors["vector_heat"] < 5e-3
    assert errors["vector_heat"] < errors["projection"]


# ------------------------------------------------------------------ edge cases and errors

def test_point_cloud_knn_gets_finite_transport_and_logmap():
    pos, _ = icosphere(2)
    out = run_op("neighborhoods", mesh_record(pos, np.zeros((0, 3))), knn=8)
    for key in ("edge_dist", "transport", "logmap"):
        assert np.all(np.isfinite(out[key]))


@pytest.mark.parametrize("params", [{}, {"rings": 2}, {"geodesic_radius": 0.3}])
def test_point_cloud_without_faces_explains_what_to_write(params):
    pos, _ = icosphere(1)
    with pytest.raises(OpError, match="knn"):
        run_op("neighborhoods", mesh_record(pos, np.zeros((0, 3))), **params)


def test_isolated_vertex_has_no_edges_and_no_nan():
    pos, faces = icosphere(1)
    pos = np.vstack([pos, [[5.0, 5.0, 5.0]]])
    out = run_op("neighborhoods", mesh_record(pos, faces), rings=2, distance="geodesic")
    assert len(pos) - 1 not in out["edge_index"]
    assert all(np.all(np.isfinite(out[k])) for k in ("edge_dist", "transport", "logmap"))


def test_vertex_in_no_triangle_is_unreachable_but_finite_in_knn():
    pos, faces = icosphere(1)
    pos = np.vstack([pos, [[5.0, 5.0, 5.0]]])
    out = run_op("neighborhoods", mesh_record(pos, faces), knn=3, distance="geodesic",
                 logmap="vector_heat")
    touches = np.any(out["edge_index"] == len(pos) - 1, axis=0)
    assert touches.any() and np.all(np.isposinf(out["edge_dist"][touches]))
    assert np.all(np.isfinite(out["edge_dist"][~touches]))
    assert np.all(np.isfinite(out["logmap"])) and np.all(np.isfinite(out["transport"]))


@pytest.mark.parametrize("scale", [1e-6, 1e12])
@pytest.mark.parametrize("logmap", ["projection", "vector_heat"])
def test_lengths_scale_and_angles_do_not(scale, logmap):
    pos, faces = icosphere(2)
    unit = run_op("neighborhoods", mesh_record(pos, faces), logmap=logmap)
    scaled = run_op("neighborhoods", mesh_record(pos * scale, faces), logmap=logmap)
    np.testing.assert_array_equal(scaled["edge_index"], unit["edge_index"])
    np.testing.assert_allclose(scaled["edge_dist"] / scale, unit["edge_dist"], rtol=1e-12)
    np.testing.assert_allclose(scaled["logmap"] / scale, unit["logmap"], atol=1e-10)
    assert np.abs(wrap(scaled["transport"] - unit["transport"])).max() < 1e-12


@pytest.mark.parametrize("domain, raw, words", [
    ("mesh", {"knn": 8, "radius": 0.1}, "exactly one"),
    ("mesh", {"rings": 0}, "rings must be an integer ≥ 1"),
    ("mesh", {"radius": -1.0}, "positive"),
    ("sphere", {"rings": 1}, "disc"),
    ("graph", {"knn": 3}, "hops"),
    ("molecule", {"distance": "geodesic"}, "euclidean"),
    ("sphere", {"logmap": "vector_heat"}, "projection"),
    ("mesh", {"healpix": False}, "true"),
    ("mesh", {"rigns": 1}, "did you mean 'rings'"),
])
def test_bad_specs_say_what_to_write(domain, raw, words):
    with pytest.raises(SpecError, match=words):
        get_op("neighborhoods").parse_params(raw, domain)


def test_manifest_parameters_record_the_transport_convention():
    from gdl_data.ops.registry import params_dict

    params = params_dict(get_op("neighborhoods").parse_params({}, "mesh"))
    assert "exp(i*transport)" in params["convention"]
