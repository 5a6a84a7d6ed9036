"""Neighbourhood graphs as edge lists: pure functions behind the `neighborhoods` op.

Every builder returns a canonical `edge_index` (2, e) int64: [0] = source, [1] = target, no
self-loops, no duplicates, sorted by (source, target). All but `graph_hops` on a directed graph
and `knn_edge_index(symmetric=False)` hold both directions of every edge.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from gdl_data.lazy import lazy_module

sp = lazy_module("scipy.sparse")
spatial = lazy_module("scipy.spatial")


def canonical_edges(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    """(2, e) int64 edges from source/target arrays: self-loops and duplicates dropped, sorted."""
    src = np.asarray(src, dtype=np.int64).ravel()
    dst = np.asarray(dst, dtype=np.int64).ravel()
    keys = np.unique(src[src != dst] * n + dst[src != dst])
    return np.stack([keys // n, keys % n]).astype(np.int64)


def mesh_edge_index(faces: np.ndarray, n: int) -> np.ndarray:
    """The 1-ring: every triangle side, both directions. faces: (f, 3) int; n: vertex count."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    a = faces.ravel()
    b = faces[:, [1, 2, 0]].ravel()
    return canonical_edges(np.concatenate([a, b]), np.concatenate([b, a]), n)


def mesh_components(faces: np.ndarray, n: int) -> tuple[int, np.ndarray]:
    """Connected components of a mesh through its triangles: (count, label (n,) per vertex).

    A vertex in no triangle is a component of its own.
    """
    from scipy.sparse.csgraph import connected_components

    edges = mesh_edge_index(faces, n)
    adjacency = sp.csr_matrix((np.ones(edges.shape[1]), tuple(edges)), shape=(n, n))
    return connected_components(adjacency, directed=False)


def graph_hops(edge_index: np.ndarray, n: int, hops: int) -> tuple[np.ndarray, np.ndarray]:
    """Every node reachable from each node in 1..`hops` steps along `edge_index`, with the step count.

    Breadth-first over sparse boolean matrix products, so memory follows the number of pairs
    found, not n². Directions are followed as given (an undirected graph lists both).

    edge_index: (2, e) int; n: node count; hops: ≥ 1.
    Returns (edge_index (2, e') int64 canonical, hop count (e',) float64).
    """
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    step = sp.csr_matrix((np.ones(edge_index.shape[1], dtype=bool), tuple(edge_index)),
                         shape=(n, n))
    reached = sp.identity(n, dtype=bool, format="csr")
    frontier = reached
    found_src, found_dst, found_hops = [], [], []
    for hop in range(1, hops + 1):
        frontier = (frontier @ step).astype(bool)
        frontier = (frontier > reached).tocsr()        # only pairs not reached at fewer hops
        frontier.eliminate_zeros()
        if frontier.nnz == 0:
            break
        rows, cols = frontier.nonzero()
        found_src.append(rows), found_dst.append(cols), found_hops.append(np.full(len(rows), hop))
        reached = (reached + frontier).astype(bool).tocsr()
    if not found_src:
        return np.zeros((2, 0), dtype=np.int64), np.zeros(0)
    src, dst, hop_count = (np.concatenate(x) for x in (found_src, found_dst, found_hops))
    order = np.lexsort((dst, src))
    return np.stack([src[order], dst[order]]).astype(np.int64), hop_count[order].astype(np.float64)


def knn_edge_index(pos: np.ndarray, k: int, symmetric: bool = True) -> np.ndarray:
    """Euclidean k-nearest-neighbour edges (scipy cKDTree), source = the point, target = a neighbour.

    symmetric=True (default) adds every reversed edge, so both directions are present and a
    point can have more than k neighbours; False keeps exactly min(k, n − 1) per point.
    Coincident points are neighbours like any other (distance 0).
    """
    pos = np.asarray(pos, dtype=np.float64)
    n = len(pos)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((2, 0), dtype=np.int64)
    # k + 1: each point finds itself first (or a coincident twin; canonical_edges drops self-loops).
    _, idx = spatial.cKDTree(pos).query(pos, k=k + 1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[np.arange(n), _self_or_farthest(idx)] = False
    src, dst = np.repeat(np.arange(n), k + 1)[keep.ravel()], idx[keep]
    if symmetric:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    return canonical_edges(src, dst, n)


def _self_or_farthest(idx: np.ndarray) -> np.ndarray:
    """Column to drop per row so each row keeps k neighbours: the self hit, else the farthest."""
    own = idx == np.arange(len(idx))[:, None]
    return np.where(own.any(axis=1), own.argmax(axis=1), idx.shape[1] - 1)


SMALL_POINT_SET = 64      # at most this many points: all pairs at once beat building a k-d tree


def radius_edge_index(pos: np.ndarray, radius: float) -> np.ndarray:
    """All pairs of points at Euclidean distance ≤ radius (scipy cKDTree; all pairs directly for
    at most SMALL_POINT_SET points, e.g. a molecule), both directions."""
    pos = np.asarray(pos, dtype=np.float64)
    if len(pos) <= SMALL_POINT_SET:
        diff = pos[:, None, :] - pos[None, :, :]
        close = np.einsum("ijk,ijk->ij", diff, diff) <= radius * radius
        np.fill_diagonal(close, False)
        return np.stack(np.nonzero(close)).astype(np.int64)     # row-major: sorted by (source, target)
    pairs = spatial.cKDTree(pos).query_pairs(radius, output_type="ndarray").reshape(-1, 2)
    return canonical_edges(np.concatenate([pairs[:, 0], pairs[:, 1]]),
                           np.concatenate([pairs[:, 1], pairs[:, 0]]), len(pos))


def radius_edge_indices(point_sets: Sequence[np.ndarray], radius: float) -> list[np.ndarray]:
    """radius_edge_index of each point set, byte for byte, with the sets of one size of at most
    SMALL_POINT_SET points (molecules) done together: one stacked all-pairs test per size
    instead of one call per set, whose overhead is several times a 20-atom set's own work."""
    out: list[np.ndarray] = [None] * len(point_sets)
    by_size: dict[int, list[int]] = {}
    for i, pos in enumerate(point_sets):
        if len(pos) <= SMALL_POINT_SET:
            by_size.setdefault(len(pos), []).append(i)
        else:
            out[i] = radius_edge_index(pos, radius)
    for n, members in by_size.items():
        stacked = np.asarray([point_sets[i] for i in members], dtype=np.float64).reshape(len(members), n, 3)
        diff = (stacked[:, :, None, :] - stacked[:, None, :, :]).reshape(-1, n, 3)
        close = (np.einsum("ijk,ijk->ij", diff, diff) <= radius * radius).reshape(len(members), n, n)
        close[:, np.arange(n), np.arange(n)] = False
        which, src, dst = np.nonzero(close)           # by (set, source, target), as one set alone
        bounds = np.searchsorted(which, np.arange(len(members) + 1))
        for j, i in enumerate(members):
            out[i] = np.stack([src[bounds[j]:bounds[j + 1]], dst[bounds[j]:bounds[j + 1]]]).astype(np.int64)
    return out


def sphere_disc_edge_index(pos: np.ndarray, radius: float) -> np.ndarray:
    """Pairs of points on the unit sphere within great-circle distance `radius` (radians, ≤ π).

    The same set as healpy.query_disc(inclusive=False) around each pixel centre, found at once
    through the chord 2 sin(radius / 2) in a k-d tree instead of one query per pixel.
    """
    unit = np.asarray(pos, dtype=np.float64)
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    return radius_edge_index(unit, 2.0 * np.sin(min(radius, np.pi) / 2.0))


def healpix_edge_index(nside: int) -> np.ndarray:
    """HEALPix 8-neighbour graph in RING order (healpy.get_all_neighbours, missing ones dropped).

    Most pixels have 8 neighbours; for nside ≥ 2 the 24 pixels where only three base pixels
    meet have 7 (at nside 1, every base pixel has 6 distinct ones). healpy's table already holds
    both directions of every edge, so sorting each pixel's row is all the canonical order needs
    (no global sort: nside 1024 has 10⁸ edges).
    """
    import healpy

    n = 12 * nside * nside
    pixels = np.arange(n)
    table = np.sort(healpy.get_all_neighbours(nside, pixels).T, axis=1)     # (n, 8), −1 first
    keep = (table >= 0) & (table != pixels[:, None])
    keep[:, 1:] &= table[:, 1:] != table[:, :-1]          # nside 1 lists some neighbours twice
    counts = keep.sum(axis=1)
    return np.stack([np.repeat(pixels, counts), table[keep]])


def geodesic_balls(distance_from: Callable[[int], np.ndarray], n: int,
                   radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of points within geodesic distance `radius`, with that distance.

    distance_from: point i -> (n,) distances from i (e.g. geodesics.mesh_distance_from: the
    heat method, one solve per point). Approximate distances need not be symmetric: a pair is
    an edge (both directions) when either direction is within the radius, and its length is
    the mean of the directions found.

    Returns (edge_index (2, e) canonical, geodesic length (e,) float64).
    """
    src, dst, dist = [], [], []
    for source in range(n):
        row = distance_from(source)
        near = np.flatnonzero(row <= radius)
        src.append(np.full(len(near), source)), dst.append(near), dist.append(row[near])
    return _symmetric_mean(np.concatenate(src), np.concatenate(dst), np.concatenate(dist), n)


def geodesic_edge_lengths(distance_from: Callable[[int], np.ndarray], n: int,
                          edge_index: np.ndarray) -> np.ndarray:
    """Geodesic length of each edge of a canonical, symmetric edge_index: the mean of both
    directions (inf where the ends cannot reach each other). One `distance_from` call per
    point that is the source of some edge. Returns (e,) float64.
    """
    dist = np.empty(edge_index.shape[1])
    for source, rows in edges_by_source(edge_index, n):
        dist[rows] = distance_from(source)[edge_index[1, rows]]
    return _symmetric_mean(edge_index[0], edge_index[1], dist, n)[1]


def edges_by_source(edge_index: np.ndarray, n: int) -> Iterator[tuple[int, slice]]:
    """(source, slice of its edges) for every point with edges, of a canonical edge_index."""
    starts = np.searchsorted(edge_index[0], np.arange(n + 1))
    for source in np.flatnonzero(np.diff(starts)).tolist():
        yield source, slice(int(starts[source]), int(starts[source + 1]))


def _symmetric_mean(src, dst, dist, n) -> tuple[np.ndarray, np.ndarray]:
    """Canonical edges of (src→dst) ∪ (dst→src); each length the mean over the directions given."""
    both_src, both_dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    both_dist = np.concatenate([dist, dist])
    keep = both_src != both_dst
    keys = both_src[keep] * n + both_dst[keep]
    unique_keys, slot = np.unique(keys, return_inverse=True)
    mean = np.bincount(slot, weights=both_dist[keep]) / np.bincount(slot)
    return np.stack([unique_keys // n, unique_keys % n]).astype(np.int64), mean
