"""Issue 15: with DIFFUSIONNET_PARAMS, gdl's operators are DiffusionNet's, to float32 precision.

The reference below is DiffusionNet's construction (Sharp, Attaiki, Crane, Ovsjanikov,
*DiffusionNet: Discretization Agnostic Learning on Surfaces*, ACM TOG 2022: spectral diffusion
on the cotan Laplacian's eigenbasis, gradients by local least squares in tangent frames), with
the constants its published geometry.py uses (read there, not copied), written here from
those formulas and calling no gdl_data function:
  normals   mesh: the sum of the triangles' unit normals c / (|c| + 1e-6), one vote each;
            point cloud: the least singular direction of the offsets from the point to its 30
            nearest other points (sign left free);
  frames    e1 = x projected on the tangent plane (y where |n·x| ≥ 0.9), e2 = n × e1;
  gradient  per vertex, least squares over its neighbours j (mesh: triangle sides; cloud: 30
            nearest) of f_j − f_i ≈ g · (e1, e2)-coordinates of p_j − p_i, with 1e-5·I added to
            the 2 × 2 normal matrix;
  L, mass   mesh: potpourri3d's cotan_laplacian(denom_eps=1e-10) and vertex_areas + 1e-8 × their
            mean; cloud: robust-laplacian's point_cloud_laplacian of the coordinates as given;
  evals     the k smallest of (L + 1e-8·I) φ = λ M φ by dense LAPACK (scipy.linalg.eigh).
Meshes: pyvista's sphere, nut, airplane (7 components) and ant (15 components, slivers);
clouds: points sampled on the nut and on the airplane.
"""
import os

import numpy as np
import potpourri3d as pp3d
import pytest
import robust_laplacian
import scipy.linalg
import trimesh

from gdl_data.ops import DIFFUSIONNET_PARAMS
from gdl_data.ops.gradients import to_scipy
from surfaces import mesh_record, run_op

K = 24


def pyvista_mesh(name):
    import pyvista.examples

    mesh = trimesh.load(os.path.join(os.path.dirname(pyvista.examples.__file__), name),
                        process=False)
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def sampled_cloud(name, count=800):
    pos, faces = pyvista_mesh(name)
    points, _ = trimesh.sample.sample_surface(trimesh.Trimesh(pos, faces, process=False), count,
                                              seed=0)
    return np.asarray(points, np.float64), np.zeros((0, 3), np.int64)


# --- the reference -------------------------------------------------------------------------

def ref_mesh_neighbours(faces, n):
    rings = [set() for _ in range(n)]
    for a, b, c in faces.tolist():
        rings[a] |= {b, c}
        rings[b] |= {a, c}
        rings[c] |= {a, b}
    return [sorted(r) for r in rings]


def ref_cloud_neighbours(pos, k=30):
    d2 = np.sum((pos[:, None, :] - pos[None, :, :]) ** 2, axis=2)   # brute force, small clouds
    np.fill_diagonal(d2, np.inf)
    return [list(row) for row in np.argsort(d2, axis=1, kind="stable")[:, :k]]


def ref_normals(pos, faces, neighbours):
    if len(faces) == 0:
        return np.stack([np.linalg.svd(pos[nb] - pos[i])[2][2] for i, nb in enumerate(neighbours)])
    normals = np.zeros_like(pos)
    for tri in faces:
        c = np.cross(pos[tri[1]] - pos[tri[0]], pos[tri[2]] - pos[tri[0]])
        normals[tri] += c / (np.linalg.norm(c) + 1e-6)
    return normals / np.linalg.norm(normals, axis=1, keepdims=True)


def ref_frame(normal):
    axis = np.array([1.0, 0, 0]) if abs(normal[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = axis - (axis @ normal) * normal
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(normal, e1), normal])


def ref_gradients(pos, frames, neighbours):
    n = len(pos)
    gx, gy = np.zeros((n, n)), np.zeros((n, n))
    for i, nb in enumerate(neighbours):
        A = (pos[nb] - pos[i]) @ frames[i, :2].T                      # (deg, 2) tangent edges
        solve = np.linalg.inv(A.T @ A + 1e-5 * np.eye(2)) @ A.T       # (2, deg)
        gx[i, nb], gy[i, nb] = solve
        gx[i, i], gy[i, i] = -solve.sum(axis=1)
    return gx, gy


def ref_operators(pos, faces, k=K):
    if len(faces):
        L = pp3d.cotan_laplacian(pos, faces, denom_eps=1e-10)
        mass = pp3d.vertex_areas(pos, faces)
        mass = mass + 1e-8 * mass.mean()
        neighbours = ref_mesh_neighbours(faces, len(pos))
    else:
        L, M = robust_laplacian.point_cloud_laplacian(pos)
        mass = M.diagonal()
        neighbours = ref_cloud_neighbours(pos)
    evals, evecs = scipy.linalg.eigh(L.toarray() + 1e-8 * np.eye(len(pos)), np.diag(mass),
                                     subset_by_index=[0, k - 1])
    frames = np.stack([ref_frame(nrm) for nrm in ref_normals(pos, faces, neighbours)])
    gx, gy = ref_gradients(pos, frames, neighbours)
    return {"mass": mass, "evals": np.clip(evals, 0, None), "evecs": evecs, "frames": frames,
            "gx": gx, "gy": gy}


def gdl_operators(pos, faces, params=DIFFUSIONNET_PARAMS, k=K):
    record = mesh_record(pos, faces)
    out = run_op("eigenbasis", record, k=k, **params.get("eigenbasis", {}))
    out.update(run_op("frames", record, **params.get("frames", {})))
    grads = run_op("gradients", {**record, **out}, **params.get("gradients", {}))
    n = len(pos)
    out["gx"] = to_scipy(grads["grad_x_index"], grads["grad_x_value"], n).toarray()
    out["gy"] = to_scipy(grads["grad_y_index"], grads["grad_y_value"], n).toarray()
    return out


# --- comparisons ---------------------------------------------------------------------------

def eigen_clusters(evals, gap):
    """Runs of eigenvalues closer than `gap` to their neighbour (repeated eigenvalues)."""
    starts = np.flatnonzero(np.diff(evals) > gap) + 1
    return np.split(np.arange(len(evals)), starts)


def assert_same_eigenbasis(ours, ref):
    lam, lam_ref = ours["evals"], ref["evals"]
    # 1e-5 relative; the "zero" eigenvalues (one per component, ≈ 1e-8·Σφ² from the shift) are
    # rounding-sized and compared absolutely, to 1e-9 of the largest eigenvalue computed.
    assert np.all(np.abs(lam - lam_ref) <= 1e-5 * lam_ref + 1e-9 * lam_ref.max())
    # Eigenvectors: equal up to sign, and up to a rotation inside a cluster of eigenvalues
    # closer than 1e-6·λ_max (which rounding alone can mix): the M-inner products of the two
    # bases of each cluster form an orthogonal matrix.
    mass = ref["mass"]
    for cluster in eigen_clusters(lam_ref, 1e-6 * lam_ref.max()):
        overlap = ours["evecs"][:, cluster].T @ (mass[:, None] * ref["evecs"][:, cluster])
        singular = np.linalg.svd(overlap, compute_uv=False)
        assert np.all(np.abs(singular - 1.0) < 1e-6), (cluster, singular)


@pytest.fixture(scope="module", params=["sphere.ply", "nut.ply", "airplane.ply", "ant.ply",
                                        "nut-cloud", "airplane-cloud"])
def case(request):
    name = request.param
    pos, faces = sampled_cloud(name.replace("-cloud", ".ply")) if name.endswith("-cloud") \
        else pyvista_mesh(name)
    return name, pos, faces, gdl_operators(pos, faces), ref_operators(pos, faces)


def test_normals_and_frames_match(case):
    name, pos, faces, ours, ref = case
    dots = np.einsum("ij,ij->i", ours["frames"][:, 2], ref["frames"][:, 2])
    if len(faces) == 0:
        # DiffusionNet leaves a cloud normal's sign to the SVD; gdl orients it. e1 does not
        # depend on the sign, e2 = n × e1 flips with it.
        dots = np.abs(dots)
    assert dots.min() >= 0.9999, name
    np.testing.assert_allclose(ours["frames"][:, 0], ref["frames"][:, 0], atol=1e-4)


def test_gradients_match_to_float32_precision(case):
    name, pos, faces, ours, ref = case
    sign = np.sign(np.einsum("ij,ij->i", ours["frames"][:, 2], ref["frames"][:, 2]))[:, None]
    for key, flip in (("gx", 1.0), ("gy", sign)):
        rel = np.linalg.norm(ours[key] * flip - ref[key]) / np.linalg.norm(ref[key])
        assert rel <= 1e-4, (name, key, rel)


def test_mass_eigenvalues_and_eigenvectors_match(case):
    name, pos, faces, ours, ref = case
    np.testing.assert_allclose(ours["mass"], ref["mass"], rtol=1e-9)
    assert_same_eigenbasis(ours, ref)


def test_gradients_of_the_coordinates_match_as_tangent_vectors(case):
    """The issue's measure: the 3D tangent gradient gx·e1 + gy·e2 of x, y and z (independent of
    how e1 is chosen and of the normal's sign)."""
    name, pos, faces, ours, ref = case

    def tangent_gradients(ops):
        return np.stack([(ops["gx"] @ pos[:, c])[:, None] * ops["frames"][:, 0]
                         + (ops["gy"] @ pos[:, c])[:, None] * ops["frames"][:, 1]
                         for c in range(3)])
    g, g_ref = tangent_gradients(ours), tangent_gradients(ref)
    assert np.linalg.norm(g - g_ref) / np.linalg.norm(g_ref) <= 1e-4, name


# --- the pieces, on their own ----------------------------------------------------------------

def test_uniform_weighting_gives_each_triangle_one_vote():
    """Vertex 0 is shared by a large triangle in z = 0 (normal +z, area 50) and a small one in
    x = 0 (normal +x, area 0.5): one vote each is (1, 0, 1)/√2; area weighting leans to +z."""
    from gdl_data.ops.frames import mesh_vertex_normals

    pos = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, -1, 0], [0, 0, -1.0]])
    faces = np.array([[0, 1, 2], [0, 3, 4]])
    uniform = mesh_vertex_normals(pos, faces, weighting="uniform")[0]
    np.testing.assert_allclose(uniform, [np.sqrt(0.5), 0, np.sqrt(0.5)], atol=1e-12)
    area = mesh_vertex_normals(pos, faces, weighting="area")[0]
    np.testing.assert_allclose(area, np.array([0.5, 0, 50]) / np.hypot(0.5, 50), atol=1e-12)
    damped = mesh_vertex_normals(pos, faces, weighting="uniform", normal_eps=1.0)[0]
    # |c| = 2·area: the small triangle's vote is 1 / (1 + 1) = 0.5, the large one's 100 / 101.
    np.testing.assert_allclose(damped, np.array([0.5, 0, 100 / 101]) / np.hypot(0.5, 100 / 101))


def test_cotan_laplacian_is_potpourri3ds_and_keeps_unreferenced_vertices():
    from gdl_data.ops.laplacian import cotan_laplacian

    pos, faces = pyvista_mesh("ant.ply")
    L, mass = cotan_laplacian(pos, faces)
    L_ref = pp3d.cotan_laplacian(pos, faces, denom_eps=1e-10)
    assert abs(L - L_ref).max() <= 1e-12 * abs(L_ref).max()
    areas = pp3d.vertex_areas(pos, faces)
    np.testing.assert_allclose(mass, areas + 1e-8 * areas.mean(), rtol=1e-12)
    # One vertex in no triangle: zero row, mass 1e-8 × the mean area, its own zero eigenvalue.
    extra = np.vstack([pos, [[100.0, 0, 0]]])
    out = run_op("eigenbasis", mesh_record(extra, faces), k=20, laplacian="cotan")
    assert out["mass"][-1] == pytest.approx(1e-8 * areas.mean() * len(pos) / (len(pos) + 1))
    assert np.sum(out["evals"] < 1e-9) == 16           # the ant's 15 components + the loner


@pytest.mark.parametrize("op, params, domain, message", [
    ("eigenbasis", {"laplacian": "intrinsic"}, "mesh", "laplacian must be 'robust' or 'cotan'"),
    ("eigenbasis", {"shift": "1e-8"}, "mesh", r"shift: 1\.0e-08"),
    ("eigenbasis", {"shift": -1e-8}, "mesh", "shift must be a number"),
    ("eigenbasis", {"laplacian": "cotan"}, "graph", "for graph remove them"),
    ("eigenbasis", {"shift": 1e-8}, "sphere", "for sphere remove them"),
    ("frames", {"weighting": "equal"}, "mesh", "'uniform'"),
    ("frames", {"pca_centre": "mean"}, "mesh", "pca_centre must be 'centroid' or 'point'"),
    ("frames", {"normal_eps": -1.0}, "mesh", "normal_eps must be a number"),
    ("gradients", {"regularization_scale": "abs"}, "mesh", "regularization_scale: relative"),
])
def test_bad_parameters_say_what_to_write(op, params, domain, message):
    from gdl_data.errors import SpecError
    from gdl_data.ops import get_op

    with pytest.raises(SpecError, match=message):
        get_op(op).parse_params(params, domain)


def test_the_readme_spec_block_is_diffusionnet_params():
    import re

    import yaml

    from gdl_data.ops import get_op

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    block = re.search(r"### DiffusionNet parity.*?```yaml\n(.*?)```", readme, re.S).group(1)
    for name, raw in yaml.safe_load(block)["ops"].items():
        params = get_op(name).parse_params(raw, "mesh")
        for key, value in DIFFUSIONNET_PARAMS[name].items():
            assert getattr(params, key) == value, (name, key)
