"""Issue 15: the `hks` op (heat kernel signature, Sun, Ovsjanikov, Guibas 2009).

Reference: the heat kernel itself, K_t = exp(−t M⁻¹ L) M⁻¹ (no eigendecomposition: scipy's
matrix exponential of potpourri3d's cotan Laplacian and vertex areas), whose diagonal is the
HKS: HKS(x, t) = expm(−t M⁻¹ L)[x, x] / m_x.
"""
import warnings

import numpy as np
import potpourri3d as pp3d
import pytest
import scipy.linalg
import torch
import trimesh

from gdl_data.errors import OpError, SpecError
from gdl_data.ops import DIFFUSIONNET_PARAMS
from surfaces import mesh_record, run_op


def bumpy_sphere(subdivisions=2, seed=0):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    rng = np.random.default_rng(seed)
    pos = mesh.vertices * (1 + 0.1 * rng.random((len(mesh.vertices), 1)))
    return np.asarray(pos, np.float64), np.asarray(mesh.faces, np.int64)


def dense_hks(pos, faces, times):
    L = pp3d.cotan_laplacian(pos, faces, denom_eps=1e-10).toarray()
    mass = pp3d.vertex_areas(pos, faces)
    mass = mass + 1e-8 * mass.mean()          # DiffusionNet's mass, as laplacian: cotan builds it
    return np.stack([np.diag(scipy.linalg.expm(-t * L / mass[:, None])) / mass for t in times],
                    axis=1), mass


def with_eigenbasis(record, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # k ≥ n: "returning all n pairs"
        return {**record, **run_op("eigenbasis", record, **params)}


def test_hks_with_the_full_basis_equals_the_heat_kernel_diagonal():
    pos, faces = bumpy_sphere()
    times = [0.005, 0.05, 0.5, 2.0]
    sample = with_eigenbasis(mesh_record(pos, faces), k=len(pos), laplacian="cotan")
    out = run_op("hks", sample, scale="absolute", times=times)
    reference, _ = dense_hks(pos, faces, times)
    assert out["hks"].shape == (len(pos), 4)
    np.testing.assert_allclose(out["hks_times"], times)
    np.testing.assert_allclose(out["hks"], reference, rtol=1e-8)


def test_truncated_hks_is_within_sun_et_al_bound_at_its_own_times():
    """With k pairs, the spectrum times start where exp(−λ_k t) = 1e-4 (Sun et al.'s choice), so
    the missing terms add at most 1e-4 · Σ_{i>k} φ_i(x)² ≤ 1e-4 / m_x."""
    pos, faces = bumpy_sphere()
    sample = with_eigenbasis(mesh_record(pos, faces), k=30, laplacian="cotan")
    out = run_op("hks", sample, times=8)
    t = out["hks_times"]
    lam = sample["evals"]
    np.testing.assert_allclose([t[0], t[-1]], [4 * np.log(10) / lam[-1], 4 * np.log(10) / lam[1]])
    np.testing.assert_allclose(np.diff(np.log(t)), np.log(t[1] / t[0]))     # log-spaced
    reference, mass = dense_hks(pos, faces, t)
    missing = reference - out["hks"]
    assert np.all(missing >= -1e-9 * reference)          # every dropped term is ≥ 0
    assert np.all(missing <= 1e-4 / mass[:, None])
    assert missing[:, -1].max() < 1e-3 * reference[:, -1].min()   # long times: converged


def test_diffusionnet_autoscale_times_and_formula():
    """DiffusionNet's compute_hks_autoscale: times torch.logspace(-2, 0, count), then
    Σ_k exp(−λ_k t) φ_k(x)², computed here with torch as its code does."""
    pos, faces = bumpy_sphere(1)
    sample = with_eigenbasis(mesh_record(pos, faces), k=16, **DIFFUSIONNET_PARAMS["eigenbasis"])
    out = run_op("hks", sample, times=16, **DIFFUSIONNET_PARAMS["hks"])
    scales = torch.logspace(-2, 0.0, steps=16, dtype=torch.float64)
    evals, evecs = torch.from_numpy(sample["evals"]), torch.from_numpy(sample["evecs"])
    decay = torch.exp(-evals[None, :] * scales[:, None])                     # (S, K)
    expected = (decay[None] * (evecs ** 2)[:, None, :]).sum(-1)              # (V, S)
    np.testing.assert_allclose(out["hks_times"], scales.numpy(), rtol=1e-12)
    np.testing.assert_allclose(out["hks"], expected.numpy(), rtol=1e-12)


def test_hks_of_a_graph_uses_its_eigenbasis():
    import networkx as nx

    graph = nx.karate_club_graph()
    edges = np.array(graph.edges()).T
    record = {"domain": "graph", "source": "karate", "num_nodes": 34, "edge_index": edges}
    sample = with_eigenbasis(record, k=34)
    out = run_op("hks", sample, scale="absolute", times=[0.3])
    L = nx.laplacian_matrix(graph, nodelist=range(34), weight=None).toarray().astype(float)
    np.testing.assert_allclose(out["hks"][:, 0], np.diag(scipy.linalg.expm(-0.3 * L)), rtol=1e-8)


def test_only_zero_eigenvalues_is_a_one_line_error():
    pos, faces = bumpy_sphere(1)
    parts = np.concatenate([pos, pos + 5.0]), np.concatenate([faces, faces + len(pos)])
    sample = with_eigenbasis(mesh_record(*parts, source="two-spheres.ply"), k=2)
    with pytest.raises(OpError, match="two-spheres.ply.*raise eigenbasis k"):
        run_op("hks", sample)
    assert run_op("hks", sample, scale="absolute", times=[1.0])["hks"].shape == (2 * len(pos), 1)


@pytest.mark.parametrize("params, message", [
    ({"times": [0.1, 1.0]}, "a list of times with scale absolute, and a count .* otherwise"),
    ({"scale": "absolute", "times": 8}, "a list of times with scale absolute"),
    ({"scale": "absolute", "times": [0.1, -1.0]}, "list of positive numbers"),
    ({"scale": "log"}, "scale must be one of"),
    ({"times": 0}, "times must be an integer ≥ 1"),
])
def test_bad_parameters_say_what_to_write(params, message):
    from gdl_data.ops import get_op

    with pytest.raises(SpecError, match=message):
        get_op("hks").parse_params(params, "mesh")


@pytest.mark.slow
def test_hks_is_cached_and_recomputed_alone(tmp_path, dask_client):
    """A spec with DiffusionNet's eigenbasis and hks: changing hks' times recomputes hks only,
    and what is stored is the HKS of the stored eigenbasis (float32)."""
    from gdl_data import open_dataset
    from pipelines.execute import run_pipeline
    from pipelines.spec import parse_spec

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        trimesh.Trimesh(*bumpy_sphere(1, seed=i), process=False).export(raw / f"m{i}.ply")

    def spec(times):
        return parse_spec({"name": "hks", "domain": "mesh", "source": str(raw),
                           "output": str(tmp_path / "ds"), "ops": {
                               "eigenbasis": {"k": 12, **DIFFUSIONNET_PARAMS["eigenbasis"]},
                               "hks": {"times": times}}})
    first = run_pipeline(spec(8), dask_client, progress=False)
    assert first["run"]["op_samples_computed"] == {"eigenbasis": 3, "hks": 3}
    second = run_pipeline(spec(4), dask_client, progress=False)
    assert second["run"]["op_samples_computed"] == {"hks": 3}
    for s in open_dataset(str(tmp_path / "ds")):
        assert s["hks"].dtype == np.float32 and s["hks"].shape == (len(s["pos"]), 4)
        lam, phi = s["evals"].astype(float), s["evecs"].astype(float)
        direct = (phi ** 2) @ np.exp(-np.outer(lam, s["hks_times"].astype(float)))
        np.testing.assert_allclose(s["hks"], direct, rtol=1e-5)
