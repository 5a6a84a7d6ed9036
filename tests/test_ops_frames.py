"""`frames`: orthonormal right-handed gauges, outward normals, against analytic frames and peers."""
import healpy
import numpy as np
import potpourri3d
import pytest

from gdl_data.errors import SpecError
from surfaces import cylinder, flat_grid, icosphere, mesh_record, run_op, sphere_record


def assert_right_handed_orthonormal(frames, tol=1e-6):
    gram = np.einsum("nij,nkj->nik", frames, frames)
    assert np.abs(gram - np.eye(3)).max() < tol
    assert np.abs(np.cross(frames[:, 0], frames[:, 1]) - frames[:, 2]).max() < tol


def test_icosphere_normals_are_outward_and_radial():
    pos, faces = icosphere(3)
    out = run_op("frames", mesh_record(pos, faces))
    assert_right_handed_orthonormal(out["frames"])
    radial = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    assert np.all(np.einsum("ij,ij->i", out["normals"], pos) > 0)
    # Vertex normals of a 642-vertex icosphere deviate from the sphere's by at most ~0.6°.
    assert np.abs(out["normals"] - radial).max() < 0.015
    np.testing.assert_array_equal(out["normals"], out["frames"][:, 2])


def test_normals_outward_even_when_triangles_wound_inward():
    pos, faces = icosphere(2)
    out = run_op("frames", mesh_record(pos, faces[:, ::-1]))
    assert np.all(np.einsum("ij,ij->i", out["normals"], pos) > 0)


def test_each_closed_component_is_oriented_on_its_own():
    pos, faces = icosphere(2)
    shift = np.array([3.0, 0.0, 0.0])
    both = mesh_record(np.vstack([pos, pos + shift]), np.vstack([faces, faces[:, ::-1] + len(pos)]))
    normals = run_op("frames", both)["normals"]
    away = np.vstack([pos, pos])            # from each sphere's own centre
    assert np.all(np.einsum("ij,ij->i", normals, away) > 0)


def test_angle_weighted_normals_equal_potpourri3d_vertex_normals():
    # geometry-central (potpourri3d) uses angle-weighted vertex normals; a bumpy sphere makes
    # the weighting matter (area weighting differs by ~7e-3 here).
    pos, faces = icosphere(3)
    pos = pos * (1 + 0.1 * np.random.default_rng(0).random((len(pos), 1)))
    ours = run_op("frames", mesh_record(pos, faces), weighting="angle")["normals"]
    theirs = np.asarray(potpourri3d.MeshVectorHeatSolver(pos, faces).get_tangent_frames()[2])
    assert np.abs(ours - theirs).max() < 1e-9
    area = run_op("frames", mesh_record(pos, faces))["normals"]
    assert np.abs(area - theirs).max() > 1e-3


def test_open_flat_mesh_follows_winding_and_tangent_rule():
    pos, faces, _ = flat_grid()
    frames = run_op("frames", mesh_record(pos, faces))["frames"]
    np.testing.assert_allclose(frames, np.broadcast_to(np.eye(3), frames.shape), atol=1e-12)
    flipped = run_op("frames", mesh_record(pos, faces[:, ::-1]))["frames"]
    np.testing.assert_allclose(flipped[:, 2], np.broadcast_to([0, 0, -1.0], (len(pos), 3)), atol=1e-12)
    assert_right_handed_orthonormal(flipped)


def test_open_cylinder_normals_are_radial():
    pos, faces, _ = cylinder()
    normals = run_op("frames", mesh_record(pos, faces))["normals"]
    radial = pos * [1, 1, 0]
    # Each vertex's normal lies in its radial half-plane; the triangulation tilts it < 3°.
    assert np.abs(normals[:, 2]).max() < 1e-12
    assert np.einsum("ij,ij->i", normals, radial).min() > np.cos(np.radians(3))


@pytest.mark.parametrize("orient", ["mst", "centroid"])
def test_point_cloud_normals_on_sphere_points(orient):
    pos, _ = icosphere(3)
    out = run_op("frames", mesh_record(pos, np.zeros((0, 3))), orient=orient)
    assert_right_handed_orthonormal(out["frames"])
    radial = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", out["normals"], radial).min() > 0.99


def test_point_cloud_mst_orientation_is_outward_on_a_torus():
    # The inner side of a torus faces the centroid, so only propagation gets it right.
    big, small = 1.0, 0.3
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 48, endpoint=False),
                       np.linspace(0, 2 * np.pi, 16, endpoint=False))
    u, v = u.ravel(), v.ravel()
    outward = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], axis=1)
    pos = np.stack([big * np.cos(u), big * np.sin(u), np.zeros_like(u)], axis=1) + small * outward
    mst = run_op("frames", mesh_record(pos, np.zeros((0, 3))), knn=10)["normals"]
    assert np.einsum("ij,ij->i", mst, outward).min() > 0.95
    centroid = run_op("frames", mesh_record(pos, np.zeros((0, 3))), knn=10, orient="centroid")
    assert np.einsum("ij,ij->i", centroid["normals"], outward).min() < -0.95


def test_sphere_frames_equal_analytic_spherical_basis():
    record = sphere_record(8)
    frames = run_op("frames", record)["frames"]
    theta, phi = healpy.pix2ang(8, np.arange(len(record["pos"])))
    e_theta = np.stack([np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi), -np.sin(theta)], 1)
    e_phi = np.stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)], 1)
    r_hat = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)
    np.testing.assert_allclose(frames, np.stack([e_theta, e_phi, r_hat], 1), atol=1e-12)


def test_sphere_frames_finite_and_right_handed_at_the_poles():
    record = sphere_record(1)
    record["pos"] = np.vstack([record["pos"], [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [-0.0, 0.0, 1.0]]])
    frames = run_op("frames", record)["frames"]
    assert np.all(np.isfinite(frames))
    assert_right_handed_orthonormal(frames, tol=1e-12)
    np.testing.assert_allclose(frames[-3], np.eye(3), atol=0)   # the documented φ = 0 rule
    np.testing.assert_array_equal(frames[-3], frames[-1])


def test_unreferenced_vertex_gets_a_finite_frame():
    pos, faces = icosphere(2)
    pos = np.vstack([pos, [[0.1, 0.2, 0.3]]])
    frames = run_op("frames", mesh_record(pos, faces))["frames"]
    assert np.all(np.isfinite(frames))
    assert_right_handed_orthonormal(frames)


def test_degenerate_triangles_do_not_produce_nan():
    pos, faces = icosphere(2)
    faces = np.vstack([faces, [[0, 0, 1], [2, 2, 2]]])
    for weighting in ("area", "angle"):
        frames = run_op("frames", mesh_record(pos, faces), weighting=weighting)["frames"]
        assert np.all(np.isfinite(frames))


@pytest.mark.parametrize("scale", [1e-6, 1e12])
def test_frames_do_not_depend_on_scale(scale):
    pos, faces = icosphere(2)
    # jitter: an icosphere has equidistant neighbours, whose kNN order rounding could flip
    pos = pos * (1 + 0.05 * np.random.default_rng(1).random((len(pos), 1)))
    unit = run_op("frames", mesh_record(pos, faces))["frames"]
    np.testing.assert_allclose(run_op("frames", mesh_record(pos * scale, faces))["frames"], unit,
                               atol=1e-9)
    cloud = run_op("frames", mesh_record(pos, np.zeros((0, 3))))["frames"]
    np.testing.assert_allclose(run_op("frames", mesh_record(pos * scale, np.zeros((0, 3))))["frames"],
                               cloud, atol=1e-9)


@pytest.mark.parametrize("domain, words", [("molecule", "not defined for molecules"),
                                           ("graph", "not defined for graphs")])
def test_frames_refused_at_parse_time_for_molecules_and_graphs(domain, words):
    from gdl_data.ops import get_op

    with pytest.raises(SpecError, match=words):
        get_op("frames").parse_params({}, domain)


@pytest.mark.parametrize("raw, words", [({"weighting": "cotan"}, "'area', 'angle', 'uniform'"),
                                        ({"knn": 2}, "knn must be an integer"),
                                        ({"orient": "up"}, "'mst' or 'centroid'"),
                                        ({"tangent_rule": "mine"}, "remove it")])
def test_bad_parameters_say_what_to_write(raw, words):
    from gdl_data.ops import get_op

    with pytest.raises(SpecError, match=words):
        get_op("frames").parse_params(raw, "mesh")
