"""Reference models: their geometric layers checked against numpy, scipy, healpy and networkx."""
import healpy
import networkx as nx
import numpy as np
import pytest
import robust_laplacian
import scipy.linalg
import torch
import trimesh

from gdl_data.errors import SpecError
from gdl_data.loader import collate_graphs
from gdl_data.models import build_model, get_model
from gdl_data.models.deepsphere import DeepSphere, coarsen_edges
from gdl_data.models.diffusion_net import GradientFeatures, spectral_diffusion
from gdl_data.models.features import heat_kernel_signature
from gdl_data.models.segment import propagate, symmetric_norm


def _t(a, dtype=torch.float64):
    return torch.as_tensor(np.array(a), dtype=dtype)


def _batch_index(sizes):
    ptr = torch.as_tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.long)
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.as_tensor(sizes)), ptr


def test_batched_diffusion_equals_a_per_sample_numpy_reference():
    rng = np.random.default_rng(0)
    sizes, k, c = [5, 9, 4], 3, 2
    evecs = [rng.normal(size=(n, k)) for n in sizes]
    mass = [rng.random(n) + 0.5 for n in sizes]
    evals = rng.random((len(sizes), k)) * 4
    x = [rng.normal(size=(n, c)) for n in sizes]
    time = np.array([0.1, 0.7])
    batch, ptr = _batch_index(sizes)
    got = spectral_diffusion(_t(np.concatenate(x)), _t(evals), _t(np.concatenate(evecs)),
                             _t(np.concatenate(mass)), _t(time), batch, ptr).numpy()
    expected = np.concatenate([
        phi @ (np.exp(-lam[:, None] * time[None, :]) * (phi.T @ (m[:, None] * xi)))
        for phi, m, lam, xi in zip(evecs, mass, evals, x)])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def _sphere_operator(subdivisions=1):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    L, M = robust_laplacian.mesh_laplacian(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    L, M = L.toarray(), M.toarray()
    evals, evecs = scipy.linalg.eigh(L, M)      # all of them: M-orthonormal
    return L, M, evals, evecs


def test_diffusion_in_a_full_eigenbasis_is_the_heat_semigroup():
    L, M, evals, evecs = _sphere_operator()
    n = len(L)
    x = np.random.default_rng(1).normal(size=(n, 2))
    time = np.array([0.05, 0.3])
    batch, ptr = _batch_index([n])
    got = spectral_diffusion(_t(x), _t(evals[None]), _t(evecs), _t(np.diag(M)), _t(time), batch, ptr).numpy()
    generator = np.linalg.solve(M, L)           # heat flow du/dt = -M^-1 L u, solved by scipy's expm
    for c, t in enumerate(time):
        np.testing.assert_allclose(got[:, c], scipy.linalg.expm(-t * generator) @ x[:, c], atol=1e-9)


def test_heat_kernel_signature_is_the_heat_kernel_diagonal_in_area_units():
    L, M, evals, evecs = _sphere_operator()
    mass = np.diag(M)
    area = mass.sum()
    times = torch.tensor([0.01, 0.1], dtype=torch.float64)
    batch, _ = _batch_index([len(L)])
    got = heat_kernel_signature(_t(evals[None]), _t(evecs), _t(mass), batch, times).numpy()
    generator = np.linalg.solve(M, L)
    for j, t in enumerate(times.tolist()):
        # k_t(v, v) = [exp(-t M^-1 L)]_vv / m_v, with time measured in units of the area
        expected = area * np.diag(scipy.linalg.expm(-t * area * generator)) / mass
        np.testing.assert_allclose(np.exp(got[:, j]), expected, rtol=1e-4)


def test_gradient_features_do_not_depend_on_the_tangent_frames():
    torch.manual_seed(0)
    layer = GradientFeatures(4).double()
    gx, gy = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64)
    angle = torch.rand(10, 1, dtype=torch.float64) * 2 * np.pi   # a different gauge at each vertex
    rx, ry = torch.cos(angle) * gx - torch.sin(angle) * gy, torch.sin(angle) * gx + torch.cos(angle) * gy
    torch.testing.assert_close(layer(rx, ry), layer(gx, gy))


def _healpix_edges(nside, nest):
    npix = 12 * nside * nside
    neighbours = healpy.get_all_neighbours(nside, np.arange(npix), nest=nest)   # (8, npix), -1: none
    src = np.repeat(np.arange(npix)[None], 8, axis=0)
    keep = neighbours >= 0
    return np.stack([src[keep], neighbours[keep]])


def _edge_set(edge_index):
    return set(map(tuple, np.asarray(edge_index).T.tolist()))


@pytest.mark.parametrize("nside", [2, 8])
def test_pooling_the_nested_healpix_graph_gives_the_coarser_healpix_graph(nside):
    fine = torch.as_tensor(_healpix_edges(nside, nest=True))
    assert _edge_set(coarsen_edges(fine)) == _edge_set(_healpix_edges(nside // 2, nest=True))


def test_deepsphere_permutes_ring_maps_to_nested_like_healpy():
    nside, rng = 4, np.random.default_rng(2)
    maps = [rng.normal(size=12 * nside * nside) for _ in range(2)]
    samples = [{"values": torch.as_tensor(m[:, None]), "nside": torch.tensor(nside),
                "edge_index": torch.as_tensor(_healpix_edges(nside, nest=False))} for m in maps]
    batch = collate_graphs(samples)
    nested, edges = DeepSphere(1, 3, channels=(4, 4)).to_nested(batch["values"], batch)
    expected = np.concatenate([healpy.reorder(m, r2n=True) for m in maps])
    np.testing.assert_array_equal(nested[:, 0].numpy(), expected)
    npix = 12 * nside * nside
    assert _edge_set(edges[:, edges[0] < npix]) == _edge_set(_healpix_edges(nside, nest=True))


def test_gcn_propagation_is_the_normalised_adjacency_of_networkx():
    graph = nx.karate_club_graph()
    edge_index = torch.as_tensor(np.array(nx.to_numpy_array(graph, weight=None).nonzero()))
    x = torch.randn(34, 3, dtype=torch.float64)
    got = propagate(x, edge_index, symmetric_norm(edge_index, 34).double())
    normalised_adjacency = np.eye(34) - nx.normalized_laplacian_matrix(graph, weight=None).toarray()
    np.testing.assert_allclose(got.numpy(), normalised_adjacency @ x.numpy(), atol=1e-6)   # weights in fp32


def _molecule(z, pos, cutoff):
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    src, dst = np.nonzero((dist < cutoff) & ~np.eye(len(z), dtype=bool))
    return {"z": torch.as_tensor(z), "pos": torch.as_tensor(pos, dtype=torch.float32),
            "edge_index": torch.as_tensor(np.stack([src, dst])),
            "edge_dist": torch.as_tensor(dist[src, dst], dtype=torch.float32)}


def test_schnet_is_invariant_to_atom_order_and_ignores_atoms_beyond_the_cutoff():
    rng = np.random.default_rng(3)
    z, pos = np.array([6, 6, 8, 1, 1, 7]), rng.normal(scale=1.5, size=(6, 3))
    torch.manual_seed(0)
    model = build_model("schnet", 0, 1, node_level=False, cutoff=3.0).eval()
    x = torch.zeros(6, 0)
    reference = model(x, collate_graphs([_molecule(z, pos, 3.0)]))
    order = rng.permutation(6)
    permuted = model(x, collate_graphs([_molecule(z[order], pos[order], 3.0)]))
    # a radius graph cut at 4 Å holds more edges, but those past 3 Å get a zero filter
    wider = model(x, collate_graphs([_molecule(z, pos, 4.0)]))
    torch.testing.assert_close(permuted, reference)
    torch.testing.assert_close(wider, reference)


def test_the_registry_explains_what_to_write_instead():
    with pytest.raises(SpecError, match="did you mean 'schnet'"):
        get_model("shnet")
    with pytest.raises(SpecError, match="did you mean 'hidden'"):
        build_model("gcn", 1, 2, node_level=True, hiden=8)
    with pytest.raises(SpecError, match="graph_classification"):
        build_model("deepsphere", 1, 2, node_level=True)
    with pytest.raises(SpecError, match="'hidden': 64"):
        build_model("schnet", 0, 1, node_level=False, hidden="wide")
    assert get_model("diffusion_net").requires == ("mass", "evals", "evecs", "grad_x", "grad_y")


def test_diffusion_net_learns_its_diffusion_times():
    L, M, evals, evecs = _sphere_operator()
    n, k = len(L), 8
    rng = np.random.default_rng(4)
    grad = torch.sparse_coo_tensor(torch.as_tensor(np.stack([np.arange(n), rng.permutation(n)])),
                                   torch.ones(n), (n, n), check_invariants=True)
    sample = {"pos": torch.zeros(n, 3), "mass": _t(np.diag(M), torch.float32),
              "evals": _t(evals[:k], torch.float32), "evecs": _t(evecs[:, :k], torch.float32)}
    batch = collate_graphs([sample])
    batch.update(grad_x=grad, grad_y=grad)
    torch.manual_seed(0)
    model = build_model("diffusion_net", 3, 2, node_level=False, width=4, blocks=1)
    model(torch.randn(n, 3), batch).square().sum().backward()
    # times start at 0 as in the paper; they must still get a gradient to move away from it
    assert model.blocks[0].time.grad.abs().min() > 0


def _samples_for(model_name, rng):
    """Two small random samples with the columns each model reads."""
    if model_name == "gcn":
        out = []
        for n in (7, 11):
            adjacency = np.triu(rng.random((n, n)) < 0.4, 1)
            src, dst = np.nonzero(adjacency | adjacency.T)
            out.append({"x": torch.randn(n, 2), "evecs": torch.randn(n, 5),
                        "edge_index": torch.as_tensor(np.stack([src, dst]))})
        return out
    if model_name == "schnet":
        return [{**_molecule(rng.choice([1, 6, 8], n), rng.normal(size=(n, 3)), 3.0), "x": torch.randn(n, 2)}
                for n in (5, 9)]
    if model_name == "deepsphere":
        return [{"x": torch.randn(192, 2), "nside": torch.tensor(4),
                 "edge_index": torch.as_tensor(_healpix_edges(4, nest=False))} for _ in range(2)]
    out = []
    for subdivisions in (1, 2):
        L, M, evals, evecs = _sphere_operator(subdivisions)
        n = len(L)
        index = torch.as_tensor(np.stack([np.arange(n), rng.permutation(n)]))
        out.append({"x": torch.randn(n, 2), "mass": _t(np.diag(M), torch.float32),
                    "evals": _t(evals[:6], torch.float32), "evecs": _t(evecs[:, :6], torch.float32),
                    "grad_x_index": index, "grad_x_value": torch.randn(n),
                    "grad_y_index": index, "grad_y_value": torch.randn(n)})
    return out


@pytest.mark.parametrize("model_name", ["gcn", "schnet", "deepsphere", "diffusion_net"])
def test_a_sample_gives_the_same_output_alone_and_batched(model_name):
    samples = _samples_for(model_name, np.random.default_rng(5))
    torch.manual_seed(0)
    hyper = {"deepsphere": {"channels": (4, 4)}, "gcn": {"pe_dim": 3}}.get(model_name, {})
    model = build_model(model_name, 2, 3, node_level=False, **hyper).eval()
    batched = model(torch.cat([s["x"] for s in samples]), collate_graphs(samples))
    alone = torch.cat([model(s["x"], collate_graphs([s])) for s in samples])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
