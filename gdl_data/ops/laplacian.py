"""Laplacians and mass matrices of every domain: the operators behind `eigenbasis`.

Each builder returns (L, mass): L an (n, n) sparse symmetric positive semi-definite matrix
(csr, float64), mass (n,) positive, such that the domain's eigenproblem is L φ = λ diag(mass) φ.

  mesh        "robust" (default): robust intrinsic cotangent Laplacian + lumped (Voronoi-like)
              vertex areas (Sharp & Crane, "A Laplacian for Nonmanifold Triangle Meshes", 2020,
              package robust-laplacian): survives non-manifold, sliver and zero-area triangles and
              duplicated vertices. A point cloud (faces (0, 3)) gets the same paper's point-cloud
              Laplacian, built from local Delaunay triangulations of 30 nearest neighbours.
              "cotan": the plain cotangent Laplacian on the mesh's own triangles + barycentric
              vertex areas (a third of the incident triangles' areas), the operators DiffusionNet
              (Sharp et al. 2022) builds for meshes (`cotan_laplacian` below).
  graph       combinatorial D − A (default) or symmetric normalised D^-½ (D − A) D^-½; mass ones.
  molecule    the bond graph's Laplacian, as a graph.
  sphere      the HEALPix pixel graph (gdl_data/ops/healpix.py), as a weighted graph.

Geometry is centred and scaled to unit RMS radius before robust-laplacian sees it (the cotangent
weights do not depend on scale, the areas scale back exactly by s²), so a mesh in micrometres
and the same mesh in astronomical units give the same operator up to that factor. Centring
matters for point clouds: robust-laplacian's point-cloud Laplacian depends on where the cloud
sits (measured: 800 points on a unit sphere moved by (1, 1, 1) change a point's mass by up to
37 %, on a unit cube's surface by up to 84 %; a mesh's robust Laplacian does not move).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gdl_data.lazy import lazy_module
from gdl_data.params import Choice, check_value

sp = lazy_module("scipy.sparse")

NORMALIZATIONS = ("combinatorial", "sym")
LAPLACIANS = ("robust", "cotan")      # mesh Laplacians: see mesh_laplacian / cotan_laplacian
# DiffusionNet's constants (its geometry.py, compute_operators): cotangent denominators get +1e-10
# (absolute, in length²) and every vertex area +1e-8 × the mean area, so a vertex in no triangle
# still has positive mass.
COTAN_DENOM_EPS = 1e-10
COTAN_MASS_EPS = 1e-8
POINT_CLOUD_NEIGHBORS = 30      # robust-laplacian's default neighbourhood for point clouds


def unit_scale(pos: np.ndarray) -> tuple[np.ndarray, float]:
    """(pos centred on its mean and divided by s, s) with s the RMS distance to the mean.

    Solvers see O(1) coordinates whatever the file's unit; s = 1 for a single point.
    """
    pos = np.asarray(pos, dtype=np.float64)
    centred = pos - pos.mean(axis=0)
    scale = float(np.sqrt(np.mean(np.sum(centred ** 2, axis=1)))) if len(pos) else 1.0
    scale = scale if scale > 0 and np.isfinite(scale) else 1.0
    return centred / scale, scale


def mesh_laplacian(pos: np.ndarray, faces: np.ndarray, mollify_factor: float = 1e-5,
                   centre: bool = True) -> tuple[sp.csr_matrix, np.ndarray]:
    """Robust intrinsic Laplacian and lumped mass of a triangle mesh or point cloud.

    pos: (n, 3); faces: (f, 3) int, (0, 3) for a point cloud (which needs at least 2 points);
    mollify_factor: robust-laplacian's intrinsic mollification, relative to the mean edge length
    (default 1e-5, the package's), which makes zero-area and sliver triangles harmless.
    Vertices in no triangle are decoupled by robust-laplacian (their own row, far above the low
    spectrum), so they take no slot among the smallest eigenpairs.
    centre: True (default) centres the cloud on its mean first (see the module docstring);
    False keeps the coordinates where they are, which is what DiffusionNet's compute_operators
    passes to robust-laplacian (the same when its loader centred the shape already).

    Returns (L (n, n) csr, mass (n,)), both in the units of `pos` (mass is an area).
    """
    import robust_laplacian

    unit_pos, scale = unit_scale(pos)
    if not centre:
        unit_pos = np.asarray(pos, dtype=np.float64) / scale
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces):
        L, M = robust_laplacian.mesh_laplacian(unit_pos, faces, mollify_factor=mollify_factor)
    else:
        if len(unit_pos) < 2:
            raise ValueError(f"a point cloud needs at least 2 points for a Laplacian, "
                             f"this one has {len(unit_pos)}")
        L, M = robust_laplacian.point_cloud_laplacian(
            unit_pos, mollify_factor=mollify_factor,
            n_neighbors=min(POINT_CLOUD_NEIGHBORS, len(unit_pos) - 1))
    return sp.csr_matrix(L, dtype=np.float64), M.diagonal() * scale ** 2


def cotan_laplacian(pos: np.ndarray, faces: np.ndarray, denom_eps: float = COTAN_DENOM_EPS,
                    mass_eps: float = COTAN_MASS_EPS) -> tuple[sp.csr_matrix, np.ndarray]:
    """Cotangent Laplacian and barycentric lumped mass of a triangle mesh, as DiffusionNet has them.

    Each triangle adds, for each of its sides (i, j) with opposite corner k, the weight
    w = ½ cot θ_k = ½ (a · b) / (|a × b| + denom_eps), a = p_i − p_k, b = p_j − p_k, to
    L[i, i] and L[j, j] and −w to L[i, j] and L[j, i] (Pinkall & Polthier 1993; the same
    expression as potpourri3d's `cotan_laplacian(V, F, denom_eps)`). Mass: a third of the area
    of each incident triangle, plus `mass_eps` × the mean of those (DiffusionNet's geometry.py,
    `compute_operators`), so vertices in no triangle get a small positive mass (their own zero
    eigenvalue, as in DiffusionNet). Computed in the units of `pos` (denom_eps is absolute, in
    length², as DiffusionNet uses it), so only degenerate triangles depend on the unit.
    Unlike mesh_laplacian, nothing is mollified: obtuse triangles give negative weights and a
    zero-area triangle gives weights of size |a · b| / denom_eps.

    pos: (n, 3); faces: (f, 3) int with f ≥ 1; denom_eps ≥ 0 (default 1e-10); mass_eps ≥ 0
    (default 1e-8). Returns (L (n, n) csr float64, mass (n,)) in the units of `pos`.
    """
    pos = np.asarray(pos, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    n = len(pos)
    rows, cols, weights = [], [], []
    for corner in range(3):
        i, j, k = faces[:, corner], faces[:, (corner + 1) % 3], faces[:, (corner + 2) % 3]
        a, b = pos[i] - pos[k], pos[j] - pos[k]
        w = 0.5 * np.einsum("ij,ij->i", a, b) / (np.linalg.norm(np.cross(a, b), axis=1) + denom_eps)
        rows += [i, j, i, j]
        cols += [i, j, j, i]
        weights += [w, w, -w, -w]
    L = sp.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))        # duplicates (a side shared by two triangles) summed
    p0, p1, p2 = (pos[faces[:, c]] for c in range(3))
    third_area = np.linalg.norm(np.cross(p1 - p0, p2 - p0), axis=1) / 6.0
    mass = np.bincount(faces.ravel(), weights=np.repeat(third_area, 3), minlength=n)
    return L, mass + mass_eps * mass.mean()


def graph_laplacian(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None = None,
                    normalization: str = "combinatorial", dense: bool = False
                    ) -> tuple[sp.csr_matrix | np.ndarray, np.ndarray]:
    """Graph Laplacian of an undirected weighted graph; mass ones.

    num_nodes: n; edge_index: (2, e) int, [0] source, [1] target (either or both directions of
    an edge: the adjacency is symmetrised by the larger of w(i, j) and w(j, i), so an edge listed
    both ways counts once); edge_weight: (e,) positive, default ones (parallel edges add up);
    self-loops are dropped (they cancel in D − A anyway).
    normalization: "combinatorial" (default) D − A, or "sym" D^-½ (D − A) D^-½ with isolated
    nodes left at zero (networkx's normalized_laplacian_matrix), so every connected component,
    isolated nodes included, has one zero eigenvalue either way.

    dense: return L as an (n, n) ndarray built without scipy.sparse: for small graphs (a
    molecule's ~20 atoms) sparse construction costs ~40x the eigensolve itself.

    Returns (L (n, n) csr, or ndarray with `dense`, ones (n,)).
    """
    if dense:
        return dense_graph_laplacian(num_nodes, edge_index, edge_weight, normalization), np.ones(num_nodes)
    check_value("normalization", normalization, Choice(NORMALIZATIONS))
    src, dst = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    weight = (np.ones(len(src)) if edge_weight is None
              else np.asarray(edge_weight, dtype=np.float64).reshape(-1))
    off_diagonal = src != dst
    A = sp.csr_matrix((weight[off_diagonal], (src[off_diagonal], dst[off_diagonal])),
                      shape=(num_nodes, num_nodes))      # duplicates summed
    A = A.maximum(A.T).tocsr()
    degree = np.asarray(A.sum(axis=1)).ravel()
    L = (sp.diags(degree) - A).tocsr()
    if normalization == "sym":
        with np.errstate(divide="ignore"):
            inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(degree), 0.0)
        L = (sp.diags(inv_sqrt) @ L @ sp.diags(inv_sqrt)).tocsr()
    return L, np.ones(num_nodes)


def dense_graph_laplacian(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None = None,
                          normalization: str = "combinatorial") -> np.ndarray:
    """graph_laplacian's L as a dense (n, n) ndarray: the same rules (duplicates summed, the
    larger of w(i, j) and w(j, i), self-loops dropped, isolated nodes zero under "sym")."""
    check_value("normalization", normalization, Choice(NORMALIZATIONS))
    return dense_laplacian_unchecked(num_nodes, edge_index, edge_weight, normalization)


def dense_laplacian_unchecked(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None,
                              normalization: str) -> np.ndarray:
    """dense_graph_laplacian with `normalization` already checked (once for a batch of graphs)."""
    return dense_laplacians_unchecked(num_nodes, [edge_index], [edge_weight], normalization)[0]


def dense_laplacians_unchecked(num_nodes: int, edge_indices: Sequence[np.ndarray],
                               edge_weights: Sequence[np.ndarray | None], normalization: str) -> np.ndarray:
    """dense_laplacian_unchecked of several graphs of `num_nodes` nodes each, as one (b, n, n)
    stack built in one pass (each graph's matrix the same bytes as built alone)."""
    srcs, dsts, weights, graphs = [], [], [], []
    for g, (edge_index, edge_weight) in enumerate(zip(edge_indices, edge_weights)):
        src, dst = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
        srcs.append(src)
        dsts.append(dst)
        weights.append(np.ones(len(src)) if edge_weight is None
                       else np.asarray(edge_weight, dtype=np.float64).reshape(-1))
        graphs.append(np.full(len(src), g))
    src, dst, weight, graph = (np.concatenate(parts) for parts in (srcs, dsts, weights, graphs))
    keep = src != dst
    A = np.zeros((len(edge_indices), num_nodes, num_nodes))
    np.add.at(A, (graph[keep], src[keep], dst[keep]), weight[keep])
    A = np.maximum(A, A.transpose(0, 2, 1))
    degree = A.sum(axis=2)
    D = np.zeros_like(A)
    D[:, np.arange(num_nodes), np.arange(num_nodes)] = degree
    L = D - A
    if normalization == "sym":
        with np.errstate(divide="ignore"):
            inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(degree), 0.0)
        L = L * inv_sqrt[:, :, None] * inv_sqrt[:, None, :]
    return L
