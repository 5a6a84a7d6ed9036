"""The `gradients` op: DiffusionNet's tangent-plane gradient operators grad_x, grad_y.

Sharp, Attaiki, Crane, Ovsjanikov, *DiffusionNet: Discretization Agnostic Learning on
Surfaces* (ACM TOG 2022): at each vertex i, the gradient g ∈ R² of a function f in the
vertex's tangent frame (e1, e2) is the least-squares fit of f(j) − f(i) ≈ g · v_ij over its
neighbours j, v_ij being the edge j − i projected onto (e1, e2). The fit is linear in f, so
it is two sparse n × n matrices: (grad_x @ f)[i] = g·e1 and (grad_y @ f)[i] = g·e2.
The defaults build DiffusionNet's construction, not its numbers: its frames (`frames` with
weighting uniform, normal_eps 1e-6, pca_centre point) and its ridge (regularization 1e-5,
regularization_scale absolute) give those (README, "DiffusionNet parity";
gdl_data.ops.DIFFUSIONNET_PARAMS).

Stored layout (no sparse type in storage): each matrix as COO,
  `grad_x_index` (2, nnz) int64, rows [row, col];  `grad_x_value` (nnz,) float,
  `grad_y_index`, `grad_y_value` the same for grad_y (both share one sparsity pattern);
  n is the sample's vertex count (len(pos)). `to_scipy(index, value, n)` rebuilds a matrix;
  in torch: torch.sparse_coo_tensor(index, value, (n, n)).
Neighbours: meshes their 1-ring (triangle sides); point clouds their `knn` nearest points
(DiffusionNet's k = 30); spheres the HEALPix 8 neighbours. Frames: those of an earlier
`frames` op in the spec, else `frames` with default parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdl_data.lazy import lazy_module
from gdl_data.ops.frames import frames_for
from gdl_data.ops.neighbor_graphs import knn_edge_index, mesh_edge_index
from gdl_data.ops.neighborhoods import healpix_neighbours_of
from gdl_data.ops.registry import register_op
from gdl_data.params import Choice, Integer, Number, check_params, param
from gdl_data.ops.transport import tangent_coordinates

sp = lazy_module("scipy.sparse")

REGULARIZATION_SCALES = ("relative", "absolute")


def tangent_gradient_operators(pos: np.ndarray, frames: np.ndarray, edge_index: np.ndarray,
                               regularization: float = 1e-8, regularization_scale: str = "relative"
                               ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """DiffusionNet's per-vertex least-squares gradient, as sparse matrices (grad_x, grad_y).

    For vertex i with outgoing edges e = (i, j) and tangent edge vectors v_e (the edge projected
    onto i's (e1, e2)): A_i = Σ v_e v_eᵀ + r_i·I, and g_i = A_i⁻¹ Σ v_e (f_j − f_i); the ridge
    r_i keeps the 2 × 2 solve defined when all neighbours are collinear.
    regularization_scale "relative" (default): r_i = λ·tr(Σ v_e v_eᵀ)/2, so the operators scale
    exactly as 1/length and no vertex's fit is bent by the unit; "absolute": r_i = λ in length²,
    DiffusionNet's rule (its geometry.py adds 1e-5). With the absolute ridge a vertex whose
    1-ring is nearly collinear (small eigenvalue of Σ v_e v_eᵀ not ≫ λ, e.g. the tips of the
    thin legs of pyvista's ant.ply: eigenvalue ≈ 2e-4 in the file's units) gets a visibly
    damped gradient across that direction; the relative 1e-8 leaves it the plain fit.
    A vertex with no neighbours gets a zero row (gradient 0).

    pos: (n, 3); frames: (n, 3, 3) rows (e1, e2, normal); edge_index: (2, e) [source, target];
    regularization: λ ≥ 0, default 1e-8; regularization_scale: "relative" or "absolute".
    Returns (grad_x, grad_y), scipy CSR (n, n) float64.
    """
    n = len(pos)
    src, dst = np.asarray(edge_index, dtype=np.int64)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    v = tangent_coordinates(np.asarray(pos, dtype=np.float64), frames, (src, dst))
    a_xx = np.bincount(src, weights=v[:, 0] ** 2, minlength=n)
    a_xy = np.bincount(src, weights=v[:, 0] * v[:, 1], minlength=n)
    a_yy = np.bincount(src, weights=v[:, 1] ** 2, minlength=n)
    ridge = regularization * ((a_xx + a_yy) / 2.0 if regularization_scale == "relative" else 1.0)
    a_xx, a_yy = a_xx + ridge, a_yy + ridge
    det = a_xx * a_yy - a_xy ** 2
    inv_det = np.divide(1.0, det, out=np.zeros(n), where=det > 0)
    # Coefficient of f_j in g_i: A_i⁻¹ v_e (2 × 2 inverse written out); f_i gets minus their sum.
    s = src
    coef_x = inv_det[s] * (a_yy[s] * v[:, 0] - a_xy[s] * v[:, 1])
    coef_y = inv_det[s] * (a_xx[s] * v[:, 1] - a_xy[s] * v[:, 0])
    rows = np.concatenate([src, src])
    cols = np.concatenate([dst, src])

    def assemble(coef):
        return sp.csr_matrix((np.concatenate([coef, -coef]), (rows, cols)), shape=(n, n))
    return assemble(coef_x), assemble(coef_y)


def to_scipy(index: np.ndarray, value: np.ndarray, n: int) -> sp.csr_matrix:
    """The stored COO layout (`grad_x_index` (2, nnz), `grad_x_value` (nnz,)) as a CSR (n, n)."""
    index = np.asarray(index, dtype=np.int64).reshape(2, -1)
    return sp.csr_matrix((np.asarray(value), (index[0], index[1])), shape=(n, n))


def _coo_columns(name: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    coo = matrix.tocoo()
    return {f"{name}_index": np.stack([coo.row, coo.col]).astype(np.int64),
            f"{name}_value": coo.data}


@dataclass(frozen=True)
class GradientsParams:
    """`gradients` parameters: `regularization` is read per `regularization_scale`: "relative" to
    the squared edge lengths (default) or "absolute" in length² (DiffusionNet: 1e-5, absolute).
    See tangent_gradient_operators."""

    knn: int = param(30, Integer(2), doc="neighbours per point on point clouds (as DiffusionNet)")
    regularization: float = param(1e-8, Number(0, 1, low_open=False),
                                  doc="λ of the 2 × 2 least-squares solve")
    regularization_scale: str = param("relative", Choice(REGULARIZATION_SCALES),
                                      doc="λ relative to the squared edge lengths, or absolute (DiffusionNet)")

    def __post_init__(self):
        check_params(self)


GRADIENTS = register_op(
    "gradients", GradientsParams, version="1",
    outputs=("grad_x_index", "grad_x_value", "grad_y_index", "grad_y_value"),
    depends_on=("frames",),
    doc="DiffusionNet tangent gradient operators, sparse COO (index (2, nnz) [row, col], value)")


@GRADIENTS.implement("mesh")
def _mesh(sample, p: GradientsParams) -> dict[str, np.ndarray]:
    pos = np.asarray(sample["pos"], dtype=np.float64)
    faces = np.asarray(sample["faces"], dtype=np.int64).reshape(-1, 3)
    # DiffusionNet: the mesh's own edges; a point cloud's kNN, each point with its own k.
    edges = mesh_edge_index(faces, len(pos)) if len(faces) else \
        knn_edge_index(pos, p.knn, symmetric=False)
    return _operators(pos, frames_for(sample), edges, p)


@GRADIENTS.implement("sphere")
def _sphere(sample, p: GradientsParams) -> dict[str, np.ndarray]:
    pos = np.asarray(sample["pos"], dtype=np.float64)
    return _operators(pos, frames_for(sample), healpix_neighbours_of(sample), p)


def _operators(pos, frames, edges, p: GradientsParams) -> dict[str, np.ndarray]:
    grad_x, grad_y = tangent_gradient_operators(pos, frames, edges, p.regularization,
                                                p.regularization_scale)
    return {**_coo_columns("grad_x", grad_x), **_coo_columns("grad_y", grad_y)}
