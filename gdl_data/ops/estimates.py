"""Memory estimates of the built-in ops: peak bytes an op adds on a sample, before computing.

Each formula reads only array sizes and parameters (n points, f faces, e edges, k pairs,
s sources) and counts the op's arrays at their peak, by their dtypes: a float64 per point is 8n
bytes, a sparse matrix 12 bytes a stored entry (value + int32 index). Constants that cannot be
read off the code (a library's workspace, a Cholesky factor's fill) are measured, and the whole
is calibrated against measured peak RSS in bench/RESULTS.md ("Memory estimates",
`python -m bench.op_estimates`); the registry adds BASE_BYTES (gdl_data/ops/registry.py).
Modes whose output size cannot be known before computing (a radius graph's edge count) fall back
to DEFAULT_FACTOR × the sample's bytes, as ops without a formula (registry.py).
"""
from __future__ import annotations

import math

import numpy as np

from gdl_data.ops.eigenbasis import EIGENBASIS
from gdl_data.ops.eigensolver import auto_solver, solver_bytes
from gdl_data.ops.frames import FRAMES
from gdl_data.ops.geodesics import GEODESICS
from gdl_data.ops.healpix import harmonic_block
from gdl_data.ops.neighborhoods import EDGE_CHUNK, NEIGHBORHOODS
from gdl_data.ops.registry import DEFAULT_FACTOR, sample_bytes

FILL = 6.0                  # Cholesky factor entries per n log2 n, surfaces and the HEALPix grid
MESH_LAPLACIAN_PER_FACE = 400   # robust-laplacian's intrinsic triangulation (tufted cover)
HEALPIX_GRAPH_PER_PIXEL = 400   # healpy's table, its sorted copy, the edge list and weights
HEAT_PER_VERTEX_LOG = 300   # potpourri3d's two factored heat-method operators, per n log2 n
EDGE_TEMPORARIES = 400      # per edge of connection angles and log maps (frame gathers, Rodrigues)


def _n(sample) -> int:
    return len(sample["pos"]) if "pos" in sample else int(sample["num_nodes"])


def _log(n: int) -> float:
    return math.log2(max(n, 2))


def _faces(sample) -> int:
    return len(np.asarray(sample["faces"]).reshape(-1, 3))


@EIGENBASIS.estimate("mesh", advice="write a smaller k (now {k})")
def _eigenbasis_mesh(sample, p) -> float:
    n, f = _n(sample), _faces(sample) or 10 * _n(sample)   # a point cloud: local triangulations
    nnz = n + 3 * f
    solver = auto_solver(n, "surface") if p.solver == "auto" else p.solver
    solve = solver_bytes(n, nnz, p.k, solver, p.dense_below, FILL * n * _log(n))
    return max(MESH_LAPLACIAN_PER_FACE * f, 12 * nnz + solve)


@EIGENBASIS.estimate("sphere", advice="write basis: spherical_harmonics (no graph, no solver), "
                                      "or a smaller k (now {k})")
def _eigenbasis_sphere(sample, p) -> float:
    n = _n(sample)
    if p.basis == "spherical_harmonics":
        return 16 * n * (min(p.k, n) + 8)          # the columns, their stack, angles
    nnz = 9 * n
    solver = auto_solver(n, "grid") if p.solver == "auto" else p.solver
    solve = solver_bytes(n, nnz, p.k, solver, p.dense_below, FILL * n * _log(n),
                         block=harmonic_block(p.k, n))
    return max(HEALPIX_GRAPH_PER_PIXEL * n, 12 * nnz + solve)


def _eigenbasis_graph(n: int, edges: int, p) -> float:
    nnz = n + 2 * edges                            # symmetrised: both directions at most
    solver = auto_solver(n, "graph") if p.solver == "auto" else p.solver
    # coo, csr, the transpose and their maximum while the Laplacian is built: 80 B an edge
    return max(80 * edges, 12 * nnz + solver_bytes(n, nnz, p.k, solver, p.dense_below,
                                                    n * n / 2))


@EIGENBASIS.estimate("graph", advice="write a smaller k (now {k}), or solver: auto")
def _eigenbasis_graphs(sample, p) -> float:
    return _eigenbasis_graph(_n(sample), np.shape(sample["edge_index"])[-1], p)


@EIGENBASIS.estimate("molecule", advice="write a smaller k (now {k})")
def _eigenbasis_molecule(sample, p) -> float:
    return _eigenbasis_graph(_n(sample), np.shape(sample["bond_index"])[-1], p)


@FRAMES.estimate("sphere", advice="")
def _frames_sphere(sample, p) -> float:
    return 240 * _n(sample)                        # frames (72n) and the spherical basis' parts


@FRAMES.estimate("mesh", advice="on point clouds, write a smaller knn (now {knn})")
def _frames_mesh(sample, p) -> float:
    n, f = _n(sample), _faces(sample)
    if not f:                                      # PCA over knn neighbours, then the kNN MST
        return n * p.knn * (4 * 24 + 60) + 300 * n
    return 600 * f + 200 * n                       # corner weights, edge uniques, normals


@NEIGHBORHOODS.estimate("sphere", advice="write neighborhoods: {{healpix: true}} (8 neighbours)"
                                         " instead of a wide disc")
def _neighborhoods_sphere(sample, p) -> float:
    n = _n(sample)
    mode, radius = p.mode("sphere")
    edges = 8 * n if mode == "healpix" else n * n * (1 - math.cos(min(radius, math.pi))) / 2
    frames = sample.get("frames")
    copies = 24 * n + (72 * n if frames is None or np.asarray(frames).dtype != np.float64 else 0)
    build = HEALPIX_GRAPH_PER_PIXEL * n if mode == "healpix" else 48 * edges
    return 48 * edges + copies + max(build, EDGE_TEMPORARIES * min(edges, EDGE_CHUNK))


@NEIGHBORHOODS.estimate("mesh", advice="write neighborhoods: {{rings: 1}} or a smaller knn")
def _neighborhoods_mesh(sample, p) -> float:
    n, f = _n(sample), _faces(sample)
    mode, value = p.mode("mesh")
    if mode == "rings" and p.logmap == "projection" and (value == 1 or p.distance == "euclidean"):
        edges = 3 * f * value * (value + 1) / 2    # k-ring: ≈ 3k(k+1) neighbours a vertex
    elif mode == "knn" and p.distance == "euclidean" and p.logmap == "projection":
        edges = 2 * n * value
    else:                                          # edge count unknown before computing
        return DEFAULT_FACTOR * sample_bytes(sample)
    return (48 + EDGE_TEMPORARIES + 48) * edges + 100 * n    # outputs, temporaries, uniques


@GEODESICS.estimate("mesh", advice="write fewer sources (now {sources})")
def _geodesics_mesh(sample, p) -> float:
    n = _n(sample)
    rows = 4 * n * _source_count(p.sources, n)
    if p.method_for("mesh") == "exact":
        return DEFAULT_FACTOR * sample_bytes(sample) + rows
    return HEAT_PER_VERTEX_LOG * n * _log(n) + 40 * n + rows


@GEODESICS.estimate("sphere", advice="write fewer sources (now {sources})")
def _geodesics_sphere(sample, p) -> float:
    n = _n(sample)
    return 64 * n + 4 * n * _source_count(p.sources, n)


def _source_count(sources, n: int) -> int:
    return n if sources == "all" else len(sources) if isinstance(sources, list) else min(sources, n)
