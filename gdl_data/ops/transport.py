"""The discrete Levi-Civita connection between tangent frames, and log-map coordinates.

Sign convention of `transport` (recorded in the manifest by the `neighborhoods` op):
a tangent vector with complex coordinate z = a + ib in the source frame (a e1 + b e2) is carried
along the edge to the target, where its coordinate is exp(i·transport)·z. Equivalently,
transport is the angle of the transported source e1, measured from the target's e1 towards the
target's e2. It is antisymmetric (transport(j→i) = −transport(i→j)); summed along a closed loop
it is the loop's holonomy: 0 (mod 2π) on flat regions, +enclosed area on the unit sphere for a
loop that runs counter-clockwise seen from outside (Gauss–Bonnet).

Transport along an edge is the minimal rotation that carries the source normal onto the target
normal (about their cross product), the discrete connection used by the vector heat method
(Sharp, Soliman, Crane, *The Vector Heat Method*, 2019) and by GEM-CNN (de Haan et al. 2021).
On the sphere it is exact: that rotation is parallel transport along the great-circle arc.
"""
from __future__ import annotations

import numpy as np

from gdl_data.ops.frames import tangent_basis
from gdl_data.ops.laplacian import unit_scale
from gdl_data.ops.neighbor_graphs import mesh_components

# Normals closer to opposite than this (cos < −1 + tol) are a fold: the minimal rotation is not
# unique, so the rotation by π about the edge direction is used instead.
_FOLD_TOL = 1e-12


def rotate_normal_onto(a: np.ndarray, b: np.ndarray, v: np.ndarray,
                       fold_axis: np.ndarray | None = None) -> np.ndarray:
    """Apply to v the minimal rotation that carries unit vector a onto unit vector b (row-wise).

    Rodrigues' formula written without the angle: R v = (a·b) v + k × v + (k·v) k / (1 + a·b),
    k = a × b. Where a ≈ −b (a fold) it rotates by π about `fold_axis` made perpendicular to a
    (default: any axis perpendicular to a).

    a, b, v: (e, 3); fold_axis: (e, 3) or None. Returns (e, 3).
    """
    cos = np.einsum("ij,ij->i", a, b)
    k = np.cross(a, b)
    fold = cos < -1.0 + _FOLD_TOL
    denom = np.where(fold, 1.0, 1.0 + cos)
    rotated = (cos[:, None] * v + np.cross(k, v)
               + (np.einsum("ij,ij->i", k, v) / denom)[:, None] * k)
    if fold.any():
        a_fold, v_fold = a[fold], v[fold]
        axis = tangent_basis(a_fold)[:, 0]            # some axis perpendicular to a
        if fold_axis is not None:
            along = fold_axis[fold] - np.einsum("ij,ij->i", fold_axis[fold], a_fold)[:, None] * a_fold
            length = np.linalg.norm(along, axis=1, keepdims=True)
            axis = np.where(length > 0, along / np.where(length > 0, length, 1.0), axis)
        rotated[fold] = 2.0 * np.einsum("ij,ij->i", axis, v_fold)[:, None] * axis - v_fold
    return rotated


def frame_change_angles(src_frames: np.ndarray, dst_frames: np.ndarray,
                        fold_axis: np.ndarray | None = None) -> np.ndarray:
    """Angle (radians, in (−π, π]) of each source e1, rotated onto the target's tangent plane, in
    the target frame: the `transport` convention of this module's docstring.

    src_frames, dst_frames: (e, 3, 3) rows (e1, e2, normal), right-handed;
    fold_axis: (e, 3) axis for folds (opposite normals), e.g. the edge direction. Returns (e,).
    """
    carried_e1 = rotate_normal_onto(src_frames[:, 2], dst_frames[:, 2], src_frames[:, 0], fold_axis)
    return np.arctan2(np.einsum("ij,ij->i", carried_e1, dst_frames[:, 1]),
                      np.einsum("ij,ij->i", carried_e1, dst_frames[:, 0]))


def connection_angles(pos: np.ndarray, frames: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
    """`transport` of each edge: the discrete Levi-Civita connection from source to target frame.

    pos: (n, 3); frames: (n, 3, 3) rows (e1, e2, normal); edge_index: (2, e) [source, target].
    Returns (e,) float64 angles in (−π, π] (convention: this module's docstring).
    """
    src, dst = edge_index
    return frame_change_angles(frames[src], frames[dst], fold_axis=pos[dst] - pos[src])


def tangent_coordinates(pos: np.ndarray, frames: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
    """Each edge vector (target − source) projected onto the source's (e1, e2): (e, 2) float64.

    These are the edge vectors DiffusionNet's gradient fits use (Sharp et al. 2022).
    """
    src, dst = edge_index
    edge = pos[dst] - pos[src]
    return np.einsum("eij,ej->ei", frames[src, :2], edge)


def projected_logmap(pos: np.ndarray, frames: np.ndarray, edge_index: np.ndarray,
                     lengths: np.ndarray | None = None) -> np.ndarray:
    """Log-map coordinates of each target in its source's tangent frame, to first order.

    The edge vector is projected onto the source's tangent plane and rescaled to `lengths`
    (the geodesic length where known; default the edge's Euclidean length). Exact on flat
    regions; on the sphere with great-circle lengths it is the exact log map. An edge along the
    source normal has no tangent direction and gets (0, 0).

    pos: (n, 3); frames: (n, 3, 3); edge_index: (2, e); lengths: (e,) or None.
    Returns (e, 2) float64.
    """
    coords = tangent_coordinates(pos, frames, edge_index)
    if lengths is None:
        src, dst = edge_index
        lengths = np.linalg.norm(pos[dst] - pos[src], axis=1)
    projected = np.linalg.norm(coords, axis=1)
    scale = np.divide(lengths, projected, out=np.zeros_like(projected), where=projected > 0)
    return coords * scale[:, None]


class VectorHeatLogMap:
    """Geodesic log maps on a triangle mesh by the vector heat method, in the caller's frames.

    Sharp, Soliman, Crane, *The Vector Heat Method* (ACM TOG 2019), via potpourri3d's
    `MeshVectorHeatSolver.compute_log_map` (its "AffineLocal" strategy). potpourri3d expresses a
    log map in its own tangent basis at the source; `__call__` turns it into the source's
    (e1, e2) from `frames` by the same minimal-rotation change of frame used for `transport`.
    The solver is factored once per mesh (on the vertices in some triangle, centred and scaled
    to unit size); each source then costs a few sparse solves.

    pos: (n, 3); faces: (f, 3) int, non-empty; frames: (n, 3, 3) rows (e1, e2, normal).
    """

    def __init__(self, pos: np.ndarray, faces: np.ndarray, frames: np.ndarray):
        import potpourri3d  # imported here: only vector-heat log maps need it

        unit_pos, self._scale = unit_scale(pos)
        n = len(unit_pos)
        faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        # potpourri3d drops vertices that are in no triangle: solve on the others only.
        self._used = np.zeros(n, dtype=bool)
        self._used[faces.ravel()] = True
        self._local = np.cumsum(self._used) - 1
        sub_faces = self._local[faces]
        self._solver = potpourri3d.MeshVectorHeatSolver(unit_pos[self._used], sub_faces)
        self._component = mesh_components(sub_faces, int(self._used.sum()))[1]
        basis_x, basis_y, basis_n = (np.asarray(b, dtype=np.float64)
                                     for b in self._solver.get_tangent_frames())
        ours = np.asarray(frames, dtype=np.float64)[self._used]
        # Where potpourri3d's normal opposes ours, mirror its basis (keeps it right-handed) and
        # its coordinates with it.
        self._mirror = np.einsum("ij,ij->i", basis_n, ours[:, 2]) < 0
        sign = np.where(self._mirror, -1.0, 1.0)[:, None]
        theirs = np.stack([basis_x, sign * basis_y, sign * basis_n], axis=1)
        self._gauge = np.exp(1j * frame_change_angles(theirs, ours))

    def __call__(self, source: int) -> np.ndarray:
        """(n, 2) log-map coordinates of every vertex in the source's frame (norm: geodesic
        distance); NaN for vertices the source cannot reach (other component, in no triangle)."""
        out = np.full((len(self._used), 2), np.nan)
        if not self._used[source]:
            return out
        local = int(self._local[source])
        log = np.asarray(self._solver.compute_log_map(local), dtype=np.float64)
        z = log[:, 0] + 1j * log[:, 1]
        if self._mirror[local]:
            z = np.conj(z)
        z = z * self._gauge[local] * self._scale
        z[self._component != self._component[local]] = np.nan
        out[self._used] = np.stack([z.real, z.imag], axis=1)
        return out
