"""Per-source distance functions behind the `geodesics` op, one per domain.

Each builder does the per-sample work once (factor, build the graph) and returns
`distance_from(i) -> (n,) float64` distances from point i to every point, `inf` where
unreachable. gdl_data/ops/geodesics.py picks the sources and stores the rows.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from gdl_data.lazy import lazy_module
from gdl_data.ops.laplacian import unit_scale

sp = lazy_module("scipy.sparse")
csgraph = lazy_module("scipy.sparse.csgraph")

POINT_CLOUD_MIN_POINTS = 31     # potpourri3d's point-cloud solver uses 30 neighbours


def mesh_distance_from(pos: np.ndarray, faces: np.ndarray, method: str = "heat",
                       heat_time: float = 1.0, max_vertices_for_exact: int = 20000
                       ) -> tuple[Callable[[int], np.ndarray], np.ndarray]:
    """A per-source distance function on a mesh or point cloud, prefactored once.

    pos: (n, 3); faces: (f, 3), or (0, 3) for a point cloud (heat only); method: "heat" (default)
    or "exact"; heat_time: potpourri3d's t_coef (default 1.0); max_vertices_for_exact: refuse
    "exact" above this (default 20000).
    Returns (distance_from: vertex -> (n,) float64 in the units of pos, inf where unreachable;
    candidates: (n,) bool, the vertices in some triangle, i.e. those that can be sources).
    """
    import potpourri3d

    unit_pos, scale = unit_scale(pos)
    n = len(unit_pos)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if not len(faces):
        if method != "heat":
            raise ValueError("exact geodesics need triangles; this sample is a point cloud. "
                             "Write method: heat")
        if n < POINT_CLOUD_MIN_POINTS:
            raise ValueError(f"heat geodesics on a point cloud need at least "
                             f"{POINT_CLOUD_MIN_POINTS} points (potpourri3d uses 30 neighbours); "
                             f"this one has {n}")
        solver = potpourri3d.PointCloudHeatSolver(unit_pos, t_coef=heat_time)
        return lambda i: solver.compute_distance(i) * scale, np.ones(n, bool)
    # Solvers see only vertices in triangles (pygeodesic refuses others, potpourri3d crashes on
    # them as sources); the rest are unreachable. Other components are unreachable too: the heat
    # method gives them finite nonsense, pygeodesic garbage "best sources" (so it gets one
    # component at a time).
    component = csgraph.connected_components(sp.coo_matrix(
        (np.ones(faces.size), (faces.ravel(), faces[:, [1, 2, 0]].ravel())), shape=(n, n)),
        directed=False)[1]
    used = np.zeros(n, bool)
    used[faces.ravel()] = True
    if method == "exact":
        if used.sum() > max_vertices_for_exact:
            raise ValueError(f"exact geodesics (pygeodesic) are limited to meshes of "
                             f"max_vertices_for_exact={max_vertices_for_exact} vertices; this one "
                             f"has {used.sum()}. Write method: heat, or raise "
                             f"max_vertices_for_exact")
        solve = _exact_per_component(unit_pos, faces, component)
    else:
        heat_vertices, heat_faces = _submesh(faces, used)
        heat = potpourri3d.MeshHeatMethodDistanceSolver(unit_pos[heat_vertices], heat_faces,
                                                        t_coef=heat_time)

        def solve(i: int) -> np.ndarray:
            row = np.full(n, np.inf)
            row[heat_vertices] = heat.compute_distance(np.searchsorted(heat_vertices, i))
            return row

    def distance_from(i: int) -> np.ndarray:
        if not used[i]:
            row = np.full(n, np.inf)
            row[i] = 0.0
            return row
        row = np.asarray(solve(i), dtype=np.float64) * scale
        row[component != component[i]] = np.inf
        return row
    return distance_from, used


def _submesh(faces: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kept vertex ids ascending, the faces among them renumbered 0..) for a vertex mask."""
    vertices = np.flatnonzero(keep)
    inside = keep[faces].all(axis=1)
    return vertices, np.searchsorted(vertices, faces[inside])


def _exact_per_component(pos: np.ndarray, faces: np.ndarray, component: np.ndarray):
    """vertex -> (n,) exact distances within its component (pygeodesic, one solver per component,
    built when first needed), inf elsewhere."""
    import pygeodesic.geodesic as pygeodesic

    solvers = {}

    def solve(i: int) -> np.ndarray:
        label = component[i]
        if label not in solvers:
            vertices, sub_faces = _submesh(faces, component == label)
            solvers[label] = vertices, pygeodesic.PyGeodesicAlgorithmExact(pos[vertices], sub_faces)
        vertices, algorithm = solvers[label]
        row = np.full(len(pos), np.inf)
        source = np.array([np.searchsorted(vertices, i)])
        row[vertices] = algorithm.geodesicDistances(source, None)[0]
        return row
    return solve


def graph_distance_from(num_nodes: int, edge_index: np.ndarray,
                        edge_weight: np.ndarray | None = None) -> Callable[[int], np.ndarray]:
    """Shortest-path distance function along edge directions (Dijkstra); lengths = weights or 1.

    Parallel edges keep their shortest length. Returns node -> (n,) float64, inf if unreachable.
    """
    src, dst = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    length = np.ones(len(src)) if edge_weight is None else np.asarray(edge_weight, np.float64)
    order = np.lexsort((length, dst, src))             # shortest of each (src, dst) first
    key = src[order] * num_nodes + dst[order]
    first = np.r_[True, key[1:] != key[:-1]][:len(key)]   # [:0] for an edgeless graph (one atom)
    order = order[first]
    graph = sp.csr_matrix((length[order], (src[order], dst[order])), shape=(num_nodes, num_nodes))
    return lambda i: csgraph.dijkstra(graph, directed=True, indices=i)


def sphere_distance_from(pos: np.ndarray) -> Callable[[int], np.ndarray]:
    """Great-circle distance function between unit vectors: arccos(x·y), clipped to [0, π]."""
    unit = np.asarray(pos, dtype=np.float64)
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    return lambda i: np.arccos(np.clip(unit @ unit[i], -1.0, 1.0))
