"""`gradients`: DiffusionNet's tangent gradient operators against analytic gradients."""
import numpy as np
import pytest

from gdl_data.errors import SpecError
from gdl_data.ops import get_op
from gdl_data.ops.gradients import to_scipy
from surfaces import flat_grid, icosphere, mesh_record, run_op, sphere_record


def operators(record, **params):
    out = run_op("gradients", record, **params)
    n = len(record["pos"])
    return (to_scipy(out["grad_x_index"], out["grad_x_value"], n),
            to_scipy(out["grad_y_index"], out["grad_y_value"], n), out)


def test_stored_layout_is_coo_with_one_shared_pattern():
    pos, faces, _ = flat_grid()
    _, _, out = operators(mesh_record(pos, faces))
    assert out["grad_x_index"].dtype == np.int64 and out["grad_x_index"].shape[0] == 2
    assert out["grad_x_value"].shape == (out["grad_x_index"].shape[1],)
    np.testing.assert_array_equal(out["grad_x_index"], out["grad_y_index"])


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_flat_grid_gradient_of_a_linear_function_is_exact(jitter):
    pos, faces, interior = flat_grid(jitter=jitter)
    grad_x, grad_y, _ = operators(mesh_record(pos, faces))
    slope = np.array([0.7, -1.3, 0.0])
    f = pos @ slope + 2.5
    # frames on the +z plane are (x, y, z), so the frame components are the slope's x and y.
    np.testing.assert_allclose((grad_x @ f)[interior], 0.7, atol=1e-6)
    np.testing.assert_allclose((grad_y @ f)[interior], -1.3, atol=1e-6)
    # a linear function is fitted exactly at boundary vertices too
    np.testing.assert_allclose(grad_x @ f, 0.7, atol=1e-6)


def test_flat_gradient_is_expressed_in_the_given_frames():
    pos, faces, _ = flat_grid(jitter=0.3)
    angle = np.random.default_rng(3).uniform(0, 2 * np.pi, len(pos))
    frames = np.zeros((len(pos), 3, 3))
    frames[:, 0, :2] = np.stack([np.cos(angle), np.sin(angle)], 1)
    frames[:, 1, :2] = np.stack([-np.sin(angle), np.cos(angle)], 1)
    frames[:, 2, 2] = 1.0
    grad_x, grad_y, _ = operators(mesh_record(pos, faces, frames=frames))
    slope = np.array([0.7, -1.3, 0.0])
    f = pos @ slope
    np.testing.assert_allclose(grad_x @ f, frames[:, 0] @ slope, atol=1e-6)
    np.testing.assert_allclose(grad_y @ f, frames[:, 1] @ slope, atol=1e-6)


def test_planar_point_cloud_gradient_of_a_linear_function_is_exact():
    rng = np.random.default_rng(4)
    pos = np.column_stack([rng.random((200, 2)), np.zeros(200)])
    grad_x, grad_y, _ = operators(mesh_record(pos, np.zeros((0, 3))), knn=8)
    frames = run_op("frames", mesh_record(pos, np.zeros((0, 3))))["frames"]
    slope = np.array([2.0, 0.5, 0.0])
    f = pos @ slope
    np.testing.assert_allclose(grad_x @ f, frames[:, 0] @ slope, atol=1e-6)
    np.testing.assert_allclose(grad_y @ f, frames[:, 1] @ slope, atol=1e-6)


def sphere_gradient_error_of_z(nside):
    record = sphere_record(nside)
    grad_x, grad_y, _ = operators(record)
    z = record["pos"][:, 2]
    # ∇z on the unit sphere, tangential part of ẑ: in (e_θ, e_φ) it is (−sin θ, 0).
    error = np.hypot(grad_x @ z + np.sqrt(1 - z ** 2), grad_y @ z)
    return error.max()


def test_sphere_gradient_of_z_is_the_analytic_tangential_gradient():
    coarse, fine = sphere_gradient_error_of_z(8), sphere_gradient_error_of_z(16)
    # first-order fit on 8 neighbours: measured 0.063 (nside 8), 0.037 (16), 0.021 (32)
    assert fine < 0.05
    assert fine < 0.7 * coarse


def icosphere_gradient_error_of_z(subdivisions):
    pos, faces = icosphere(subdivisions)
    record = mesh_record(pos, faces)
    grad_x, grad_y, _ = operators(record)
    frames = run_op("frames", record)["frames"]
    unit = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    tangential = np.array([0.0, 0.0, 1.0]) - unit[:, 2:] * unit      # ẑ minus its normal part
    expected_x = np.einsum("ij,ij->i", frames[:, 0], tangential)
    expected_y = np.einsum("ij,ij->i", frames[:, 1], tangential)
    return np.hypot(grad_x @ pos[:, 2] - expected_x, grad_y @ pos[:, 2] - expected_y).max()


def test_icosphere_gradient_of_z_converges_to_analytic():
    coarse, fine = icosphere_gradient_error_of_z(2), icosphere_gradient_error_of_z(3)
    # measured 0.042 (162 vertices), 0.025 (642), 0.012 (2562): first order in edge length
    assert fine < 0.03
    assert fine < 0.7 * coarse


@pytest.mark.parametrize("scale", [1e-6, 1e12])
def test_gradients_scale_as_one_over_length(scale):
    pos, faces = icosphere(2)
    unit_x, unit_y, _ = operators(mesh_record(pos, faces))
    x, y, _ = operators(mesh_record(pos * scale, faces))
    np.testing.assert_allclose((x * scale).toarray(), unit_x.toarray(), atol=1e-9)
    np.testing.assert_allclose((y * scale).toarray(), unit_y.toarray(), atol=1e-9)


def test_isolated_vertex_gets_a_zero_row_not_nan():
    pos, faces = icosphere(1)
    pos = np.vstack([pos, [[3.0, 0.0, 0.0]]])
    grad_x, grad_y, out = operators(mesh_record(pos, faces))
    assert np.all(np.isfinite(out["grad_x_value"])) and np.all(np.isfinite(out["grad_y_value"]))
    assert grad_x[len(pos) - 1].count_nonzero() == 0 and grad_y[len(pos) - 1].count_nonzero() == 0


def test_collinear_neighbours_stay_finite():
    pos = np.column_stack([np.arange(10.0), np.zeros(10), np.zeros(10)])   # points on a line
    grad_x, grad_y, out = operators(mesh_record(pos, np.zeros((0, 3))), knn=3)
    assert np.all(np.isfinite(out["grad_x_value"])) and np.all(np.isfinite(out["grad_y_value"]))


@pytest.mark.parametrize("domain, raw, words", [("mesh", {"knn": 1}, "knn must be"),
                                                ("mesh", {"regularization": -1}, "regularization"),
                                                ("graph", {}, "not defined for domain 'graph'")])
def test_bad_specs_say_what_to_write(domain, raw, words):
    with pytest.raises(SpecError, match=words):
        get_op("gradients").parse_params(raw, domain)
