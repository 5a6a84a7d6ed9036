"""`eigenbasis` against references no code here computes: the sphere's l(l+1), dense LAPACK on
robust-laplacian's and networkx's own matrices, analytic grid-graph spectra, healpy's harmonics."""
import warnings

import networkx as nx
import numpy as np
import pytest
import robust_laplacian
import scipy.linalg

from gdl_data.errors import SpecError
from gdl_data.ops import get_op
from gdl_data.ops.eigenbasis import graph_eigenbasis, mesh_eigenbasis
from surfaces import icosphere, mesh_record, sphere_record

EIGENBASIS = get_op("eigenbasis")


def sphere_spectrum(count):
    """l(l+1) with multiplicity 2l+1: the unit sphere's Laplace–Beltrami eigenvalues."""
    return np.array([l * (l + 1) for l in range(count) for _ in range(2 * l + 1)][:count], float)


def run(record, **params):
    return EIGENBASIS.run(record, EIGENBASIS.parse_params(params, record["domain"]))


def assert_mass_orthonormal(evecs, mass, atol=1e-8):
    gram = evecs.T @ (mass[:, None] * evecs)
    np.testing.assert_allclose(gram, np.eye(evecs.shape[1]), atol=atol)


def subspace_residual(basis, vectors, weights):
    """Largest relative part of each column of `vectors` outside span(basis) (weighted)."""
    w = np.sqrt(weights)[:, None]
    coeffs, *_ = np.linalg.lstsq(basis * w, vectors * w, rcond=None)
    rest = (vectors - basis @ coeffs) * w
    return np.max(np.linalg.norm(rest, axis=0) / np.linalg.norm(vectors * w, axis=0))


# --- meshes ---------------------------------------------------------------------------------

def test_icosphere_spectrum_is_l_l_plus_1():
    pos, faces = icosphere(4)                       # 2562 vertices: the iterative solver's path
    out = run(mesh_record(pos, faces), k=36)
    exact = sphere_spectrum(36)
    assert out["evals"].shape == (36,) and out["evecs"].shape == (len(pos), 36)
    assert abs(out["evals"][0]) < 1e-8
    assert np.max(np.abs(out["evals"][1:] - exact[1:]) / exact[1:]) < 0.02
    assert np.all(np.diff(out["evals"]) >= 0)
    assert_mass_orthonormal(out["evecs"], out["mass"])
    assert out["mass"].sum() == pytest.approx(4 * np.pi, rel=0.01)


@pytest.mark.parametrize("solver", ["block_lanczos", "arpack", "lobpcg"])
def test_iterative_solvers_match_dense_lapack_on_robust_laplacian(solver):
    pos, faces = icosphere(3)
    L, M = robust_laplacian.mesh_laplacian(pos, faces)          # the peer library's own matrices
    reference = scipy.linalg.eigh(L.toarray(), M.toarray(), eigvals_only=True)[:40]
    out = mesh_eigenbasis(pos, faces, k=40, solver=solver, dense_below=0)
    np.testing.assert_allclose(out["evals"], reference, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out["mass"], M.diagonal(), rtol=1e-9)
    assert_mass_orthonormal(out["evecs"], out["mass"])
    # Each eigenvector satisfies L φ = λ M φ of robust-laplacian's matrices.
    residual = L @ out["evecs"] - M @ out["evecs"] * out["evals"]
    assert np.abs(residual).max() < 1e-6 * np.abs(L @ out["evecs"]).max()


@pytest.mark.parametrize("scale", [1e-6, 1e12])
def test_scaled_mesh_scales_eigenvalues_by_inverse_square(scale):
    pos, faces = icosphere(3)
    unit = mesh_eigenbasis(pos, faces, k=16, dense_below=0)
    scaled = mesh_eigenbasis(pos * scale + 3 * scale, faces, k=16, dense_below=0)
    np.testing.assert_allclose(scaled["evals"][1:] * scale ** 2, unit["evals"][1:], rtol=1e-8)
    assert abs(scaled["evals"][0]) * scale ** 2 < 1e-8
    np.testing.assert_allclose(scaled["mass"] / scale ** 2, unit["mass"], rtol=1e-8)
    assert_mass_orthonormal(scaled["evecs"], scaled["mass"])


def test_same_input_gives_byte_identical_output_with_fixed_signs():
    pos, faces = icosphere(3)
    first = mesh_eigenbasis(pos, faces, k=24, dense_below=0)
    second = mesh_eigenbasis(pos.copy(), faces.copy(), k=24, dense_below=0)
    for key in ("mass", "evals", "evecs"):
        assert first[key].tobytes() == second[key].tobytes()
    # The documented sign rule: the first entry within 1e-6 of the largest magnitude is positive.
    magnitude = np.abs(first["evecs"])
    pivot = np.argmax(magnitude >= (1 - 1e-6) * magnitude.max(axis=0), axis=0)
    assert np.all(first["evecs"][pivot, np.arange(24)] > 0)


def test_disconnected_mesh_has_one_zero_eigenvalue_per_component():
    pos, faces = icosphere(3)
    two = np.vstack([pos, pos + [5.0, 0.0, 0.0]]), np.vstack([faces, faces + len(pos)])
    out = mesh_eigenbasis(*two, k=8, dense_below=0)
    assert np.sum(out["evals"] < 1e-8) == 2
    assert out["evals"][2] == pytest.approx(2.0, rel=0.02)


def test_degenerate_triangles_and_duplicate_vertices_give_finite_sphere_spectrum():
    pos, faces = icosphere(3)
    n = len(pos)
    a, b, c = faces[0]
    extra_pos = [pos[a],                                # exact duplicate of a vertex
                 0.5 * (pos[b] + pos[c]),               # on an edge: zero-area triangle below
                 pos[a] + 1e-9 * (pos[b] - pos[a])]     # almost on a vertex: a sliver
    extra_faces = [[n, b, c], [b, c, n + 1], [a, b, n + 2], [a, a, b]]
    record = mesh_record(np.vstack([pos, extra_pos]), np.vstack([faces, extra_faces]))
    out = run(record, k=9)
    assert all(np.all(np.isfinite(out[key])) for key in out)
    exact = sphere_spectrum(9)
    assert np.max(np.abs(out["evals"][1:] - exact[1:]) / exact[1:]) < 0.05
    assert_mass_orthonormal(out["evecs"], out["mass"])


def test_point_cloud_matches_robust_point_cloud_laplacian():
    pos, _ = icosphere(3)
    L, M = robust_laplacian.point_cloud_laplacian(pos)
    reference = scipy.linalg.eigh(L.toarray(), M.toarray(), eigvals_only=True)[:9]
    out = run(mesh_record(pos, np.zeros((0, 3))), k=9)
    np.testing.assert_allclose(out["evals"], reference, rtol=1e-6, atol=1e-8)
    exact = sphere_spectrum(9)
    assert np.max(np.abs(out["evals"][1:] - exact[1:]) / exact[1:]) < 0.05


def test_k_at_least_n_returns_all_pairs_with_a_warning():
    pos, faces = icosphere(0)                      # 12 vertices
    with pytest.warns(UserWarning, match="returning all 12"):
        out = mesh_eigenbasis(pos, faces, k=20)
    L, M = robust_laplacian.mesh_laplacian(pos, faces)
    np.testing.assert_allclose(out["evals"], scipy.linalg.eigh(L.toarray(), M.toarray(),
                                                               eigvals_only=True), atol=1e-9)
    assert out["evecs"].shape == (12, 12)


# --- graphs and molecules -------------------------------------------------------------------

def karate(extra_isolated=0):
    graph = nx.karate_club_graph()
    graph.add_nodes_from(range(34, 34 + extra_isolated))
    edges = np.array(list(graph.edges())).T
    return graph, np.hstack([edges, edges[::-1]])


@pytest.mark.parametrize("normalization, reference_matrix", [
    ("combinatorial", nx.laplacian_matrix), ("sym", nx.normalized_laplacian_matrix)])
@pytest.mark.parametrize("isolated", [0, 5])
def test_graph_spectrum_matches_dense_eigh_of_networkx_laplacian(normalization, reference_matrix,
                                                                 isolated):
    graph, edge_index = karate(isolated)
    n = graph.number_of_nodes()
    reference = np.linalg.eigh(reference_matrix(graph, nodelist=range(n), weight=None).toarray())[0]
    out = graph_eigenbasis(n, edge_index, k=12, normalization=normalization)
    np.testing.assert_allclose(out["evals"], reference[:12], atol=1e-10)
    assert np.sum(out["evals"] < 1e-10) == 1 + isolated      # one zero per component
    assert_mass_orthonormal(out["evecs"], np.ones(n))
    np.testing.assert_array_equal(out["mass"], np.ones(n))


def test_weighted_graph_matches_dense_eigh():
    graph = nx.les_miserables_graph()
    index = {name: i for i, name in enumerate(graph)}
    src, dst, weight = zip(*[(index[u], index[v], w) for u, v, w in graph.edges(data="weight")])
    edge_index = np.array([src + dst, dst + src])
    reference = np.linalg.eigh(nx.laplacian_matrix(graph, nodelist=list(graph)).toarray())[0]
    out = graph_eigenbasis(len(index), edge_index, np.array(weight + weight, float), k=10)
    np.testing.assert_allclose(out["evals"], reference[:10], atol=1e-9)


@pytest.mark.parametrize("solver", ["auto", "lobpcg"])
def test_large_grid_graph_with_isolated_nodes_matches_analytic_spectrum(solver):
    side, isolated = 40, 10                         # 1610 nodes: the iterative solvers' path
    graph = nx.grid_2d_graph(side, side)
    index = {node: i for i, node in enumerate(graph)}
    edges = np.array([(index[u], index[v]) for u, v in graph.edges()]).T
    out = graph_eigenbasis(side * side + isolated, np.hstack([edges, edges[::-1]]), k=40,
                           solver=solver)
    path = 2 - 2 * np.cos(np.pi * np.arange(side) / side)   # path graph P_side eigenvalues
    grid = np.sort(np.add.outer(path, path).ravel())
    expected = np.sort(np.r_[np.zeros(isolated), grid])[:40]
    np.testing.assert_allclose(out["evals"], expected, atol=1e-9)
    assert_mass_orthonormal(out["evecs"], out["mass"])


@pytest.mark.parametrize("solver", ["auto", "lobpcg"])
def test_graph_without_edges_gives_zero_eigenvalues_and_an_orthonormal_basis(solver):
    # 1500 isolated nodes: L = 0, the Krylov space closes after one block (the solver's
    # breakdown path); every eigenvalue is 0 and any orthonormal vectors are eigenvectors.
    out = graph_eigenbasis(1500, np.zeros((2, 0), np.int64), k=40, solver=solver)
    np.testing.assert_array_equal(out["evals"], np.zeros(40))
    assert_mass_orthonormal(out["evecs"], out["mass"])


def test_molecule_bond_graph_and_single_atom():
    bonds = [(0, 1), (1, 2), (1, 3), (3, 4)]         # a small branched skeleton
    graph = nx.Graph(bonds)
    bond_index = np.array(bonds + [(b, a) for a, b in bonds]).T
    record = {"domain": "molecule", "source": "m.sdf#0", "pos": np.zeros((5, 3)),
              "z": np.full(5, 6), "bond_index": bond_index}
    with pytest.warns(UserWarning):
        out = run(record, k=5)
    reference = np.linalg.eigh(nx.laplacian_matrix(graph, nodelist=range(5)).toarray())[0]
    np.testing.assert_allclose(out["evals"], reference, atol=1e-10)

    atom = {"domain": "molecule", "source": "h.sdf#0", "pos": np.zeros((1, 3)), "z": np.array([1]),
            "bond_index": np.zeros((2, 0), np.int64)}
    with pytest.warns(UserWarning, match="returning all 1"):
        out = run(atom, k=4)
    assert out["evals"].tolist() == [0.0] and out["evecs"].tolist() == [[1.0]]


# --- sphere ---------------------------------------------------------------------------------

def healpy_harmonic_maps(nside, degree):
    """Maps of the degree-`degree` harmonics, synthesised by healpy from unit a_lm (re and im)."""
    import healpy

    lmax = degree
    maps = []
    for m in range(degree + 1):
        for value in ((1.0,) if m == 0 else (1.0, 1.0j)):
            alm = np.zeros(healpy.Alm.getsize(lmax), complex)
            alm[healpy.Alm.getidx(lmax, degree, m)] = value
            maps.append(healpy.alm2map(alm, nside, lmax=lmax))
    return np.stack(maps, axis=1)


def test_spherical_harmonics_option_is_exact_and_spans_healpy_harmonics():
    nside = 8
    out = run(sphere_record(nside), k=25, basis="spherical_harmonics")
    np.testing.assert_array_equal(out["evals"], sphere_spectrum(25))
    for degree in range(5):
        columns = out["evecs"][:, degree ** 2:(degree + 1) ** 2]
        assert subspace_residual(columns, healpy_harmonic_maps(nside, degree), out["mass"]) < 1e-10
    # Orthonormal up to HEALPix quadrature (the documented bound at nside 8).
    assert_mass_orthonormal(out["evecs"], out["mass"], atol=0.02)


def test_healpix_graph_laplacian_low_eigenvectors_span_coordinates():
    nside = 16                                      # 3072 pixels
    record = sphere_record(nside)
    out = run(record, k=4)
    assert abs(out["evals"][0]) < 1e-10 and out["evals"][1] > 1e-6
    # One l = 1 triple, split ≈ 1.3 % by the graph's anisotropy (z against x, y) at nside 16.
    np.testing.assert_allclose(out["evals"][1:], out["evals"][1], rtol=0.03)
    # l = 1 spherical harmonics are the coordinates x, y, z (analytic). The 8-neighbour graph
    # only approximates them, ≈ 5 % off at every nside (Defferrard et al. 2020: it does not
    # converge); unweighted, the same graph is ≈ 7 % off, so the kernel weights must be in use.
    assert subspace_residual(out["evecs"][:, 1:4], record["pos"], out["mass"]) < 0.06
    from gdl_data.ops.healpix import healpix_graph
    edge_index, _ = healpix_graph(nside)
    unweighted = graph_eigenbasis(len(record["pos"]), edge_index, k=4)
    assert subspace_residual(unweighted["evecs"][:, 1:4], record["pos"], out["mass"]) > 0.065


def healpy_laplacian(nside):
    """DeepSphere's HEALPix graph Laplacian built here from healpy's neighbour table and the
    kernel of its definition (gdl_data/ops/healpix.py's docstring), as a scipy csr matrix."""
    import healpy
    import scipy.sparse as sp

    n = 12 * nside * nside
    pos = np.stack(healpy.pix2vec(nside, np.arange(n)), axis=1)
    neighbours = healpy.get_all_neighbours(nside, np.arange(n))          # (8, n), −1: none
    rows = np.repeat(np.arange(n)[None, :], 8, axis=0)
    keep = neighbours >= 0
    i, j = rows[keep], neighbours[keep]
    squared = np.sum((pos[i] - pos[j]) ** 2, axis=1)
    t = 0.5 * squared.mean()                                    # DeepSphere's kernel width
    adjacency = sp.csr_matrix((np.exp(-squared / (4 * t)), (i, j)), shape=(n, n))
    return (sp.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency).tocsr()


@pytest.mark.parametrize("solver", ["block_lanczos", "lobpcg"])
def test_healpix_graph_laplacian_matches_dense_eigh_of_a_laplacian_built_from_healpy(solver):
    nside = 8                                       # 768 pixels; dense_below=0: the solvers' path
    n = 12 * nside * nside
    values, vectors = np.linalg.eigh(healpy_laplacian(nside).toarray())
    out = run(sphere_record(nside), k=16, solver=solver, dense_below=0)
    np.testing.assert_allclose(out["evals"], values[:16], rtol=1e-9, atol=1e-12)
    # l ≤ 3: whole clusters, so the 16-dimensional eigenspace is well defined.
    assert subspace_residual(out["evecs"], vectors[:, :16], np.ones(n)) < 1e-6
    assert_mass_orthonormal(out["evecs"], out["mass"])


@pytest.mark.parametrize("k, clusters", [(10, 9), (16, 16), (20, 16)])
def test_lobpcg_on_a_multilevel_healpix_map_matches_arpack_on_healpys_graph(k, clusters):
    # nside 32: 12,288 pixels, a three-level multigrid hierarchy (float32 V-cycle), soft locking,
    # and the sphere's block: every harmonic of the k-th pair's degree (16 for k 10 and 16, 25
    # for k 20). Reference: ARPACK shift-invert, to machine precision, on the Laplacian built
    # here from healpy. Tolerance: the solver's tol 1e-6 bounds each residual relative to λ_k,
    # so eigenvalues agree to ≈ tol² · λ_k and eigenspaces to ≈ tol.
    import scipy.sparse.linalg as sla
    from gdl_data.ops.healpix import harmonic_block

    assert [harmonic_block(j, 10 ** 6) for j in (1, 2, 9, 10, 16, 17, 20, 64)] == \
        [1, 4, 9, 16, 16, 25, 25, 64]
    nside = 32
    L = healpy_laplacian(nside)
    values, vectors = sla.eigsh(L, k=k, sigma=-1e-3, which="LM", tol=0,
                                v0=np.ones(L.shape[0]))
    out = run(sphere_record(nside), k=k, solver="lobpcg", dense_below=0)
    np.testing.assert_allclose(out["evals"], values, rtol=0, atol=1e-10 * values[-1])
    # Whole degree clusters (l ≤ 2: 9 pairs; l ≤ 3: 16) have well-defined eigenspaces.
    assert subspace_residual(out["evecs"], vectors[:, :clusters], out["mass"]) < 1e-6
    assert_mass_orthonormal(out["evecs"], out["mass"])


# --- parameters -----------------------------------------------------------------------------

@pytest.mark.parametrize("params, domain, message", [
    ({"k": 0}, "mesh", "write e.g. k: 64"),
    ({"normalization": "rw"}, "graph", "write e.g. normalization: combinatorial"),
    ({"normalization": "sym"}, "mesh", "robust cotangent"),
    ({"basis": "spherical_harmonics"}, "graph", "only on the sphere"),
    ({"solver": "jacobi_davidson"}, "mesh", "write e.g. solver: auto"),
    ({"tol": 0}, "mesh", "write e.g. tol"),
    ({"kk": 3}, "mesh", "did you mean 'k'"),
])
def test_bad_parameters_say_what_to_write(params, domain, message):
    with pytest.raises(SpecError, match=message):
        EIGENBASIS.parse_params(params, domain)


def test_small_point_cloud_is_an_op_error_naming_the_sample():
    from gdl_data.errors import OpError

    with warnings.catch_warnings(), pytest.raises(OpError, match="one-point.ply"):
        warnings.simplefilter("ignore")
        run(mesh_record(np.zeros((1, 3)), np.zeros((0, 3)), source="one-point.ply"))
