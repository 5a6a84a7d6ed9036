"""The HEALPix pixel graph of DeepSphere and the real spherical harmonics at pixel centres.

HEALPix (Górski et al. 2005, healpy) pixels are equal-area, so pixel centres are a fair sample of
the sphere. DeepSphere (Perraudin et al. 2019) connects each pixel to its 8 (or 7) neighbours
with Gaussian-kernel weights w = exp(−d² / (4t)), d the Euclidean distance between the unit
pixel centres and t half the mean of d² over all edges (DeepSphere's `kernel_width`), whose
graph Laplacian approximates the Laplace–Beltrami operator.
"""
from __future__ import annotations

import math

import numpy as np

from gdl_data.lazy import lazy_module
from gdl_data.ops.neighbor_graphs import healpix_edge_index

sp = lazy_module("scipy.sparse")


def pixel_centres(nside: int) -> np.ndarray:
    """Unit vectors (12 nside², 3) of the pixel centres in RING order (healpy.pix2vec)."""
    import healpy

    return np.stack(healpy.pix2vec(nside, np.arange(12 * nside * nside)), axis=1)


def healpix_graph(nside: int) -> tuple[np.ndarray, np.ndarray]:
    """DeepSphere's HEALPix graph in RING order.

    nside: the HEALPix resolution (a power of two ≥ 1).
    Returns (edge_index (2, e) int64, both directions, sorted by (source, target) — the same
    edges as `neighborhoods`' healpix mode; weights (e,) float64 = exp(−d² / (4t)), module doc).
    """
    edge_index = healpix_edge_index(nside)
    squared = squared_edge_lengths(pixel_centres(nside), edge_index)
    t = 0.5 * squared.mean()
    np.divide(squared, -(4.0 * t), out=squared)           # = −d² / (4t), in place
    return edge_index, np.exp(squared, out=squared)


def healpix_laplacian(nside: int, normalization: str = "combinatorial") -> sp.csr_matrix:
    """The Laplacian of `healpix_graph` (as gdl_data.ops.laplacian.graph_laplacian builds it:
    D − A, or D^-½ (D − A) D^-½), assembled straight from the sorted edge list: healpy's table
    is symmetric and has no duplicates, so no symmetrising pass and its copies are needed
    (nside 1024: 10⁸ edges, each copy of the adjacency ≈ 1.2 GB)."""
    n = 12 * nside * nside
    edge_index, weights = healpix_graph(nside)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(edge_index[0], minlength=n))])
    adjacency = sp.csr_matrix((weights, edge_index[1].astype(np.int32), indptr), shape=(n, n))
    del edge_index, weights
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    laplacian = (sp.diags(degree) - adjacency).tocsr()
    del adjacency
    if normalization == "sym":
        inv_sqrt = 1.0 / np.sqrt(degree)                  # every pixel has 7 or 8 neighbours
        laplacian = (sp.diags(inv_sqrt) @ laplacian @ sp.diags(inv_sqrt)).tocsr()
    return laplacian


def squared_edge_lengths(pos: np.ndarray, edge_index: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """|pos[target] − pos[source]|² per edge, (e,) float64, in chunks of edges (no (e, 3)
    temporaries)."""
    out = np.empty(edge_index.shape[1])
    for lo in range(0, len(out), chunk):
        src, dst = edge_index[:, lo:lo + chunk]
        out[lo:lo + chunk] = np.sum((pos[src] - pos[dst]) ** 2, axis=1)
    return out


def real_spherical_harmonics(pos: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` real spherical harmonics Y_lm evaluated at unit vectors.

    Ordered by degree l, then order m = −l … l. Real form from scipy.special.sph_harm_y (complex,
    orthonormal on the sphere, Condon–Shortley phase): Y_l0; √2 Re Y_l^m for m > 0; √2 Im Y_l^|m|
    for m < 0. They are eigenfunctions of the Laplace–Beltrami operator with eigenvalue l(l+1).

    pos: (n, 3) unit vectors; count ≥ 1. Returns (values (n, count), degrees l (count,) int).
    """
    from scipy.special import sph_harm_y

    pos = np.asarray(pos, dtype=np.float64)
    polar = np.arccos(np.clip(pos[:, 2], -1.0, 1.0))
    azimuth = np.arctan2(pos[:, 1], pos[:, 0])
    columns, degrees = [], []
    l = 0
    while len(columns) < count:
        for m in range(-l, l + 1):
            y = sph_harm_y(l, abs(m), polar, azimuth)
            columns.append(y.real if m == 0 else np.sqrt(2.0) * (y.real if m > 0 else y.imag))
            degrees.append(l)
        l += 1
    return np.stack(columns[:count], axis=1), np.asarray(degrees[:count])


def harmonic_block(k: int, n: int) -> int:
    """Columns of an eigensolver block for the k lowest pairs on the sphere: every harmonic up to
    the degree l of the k-th ((l + 1)² in all, at most n). The spectrum comes in clusters of
    2l + 1 near l(l+1), so the k-th pair then converges at the rate of the gap to degree l + 1,
    never at that of a near-tie inside its own cluster (lobpcg.guard_size's purpose)."""
    return min(math.isqrt(k - 1) + 1, math.isqrt(n)) ** 2 if k > 0 else 0


def harmonic_polynomials(pos: np.ndarray, count: int) -> np.ndarray:
    """(n, count) float64 columns spanning the real spherical harmonics of the lowest degrees,
    unnormalised: for l = 0, 1, … and m = 0 … l, Q_l^m(z) · Re (x + iy)^m and, for m > 0,
    Q_l^m(z) · Im (x + iy)^m, where P_l^m(z) = Q_l^m(z) (1 − z²)^{m/2} (Legendre recurrence in
    l). On unit vectors each column is a Y_lm up to a constant; no trigonometry, O(n) a column,
    so it is a cheap start block for eigensolvers on the sphere (LOBPCG normalises columns).

    pos: (n, 3) unit vectors; count ≥ 1. The last degree may be cut short.
    """
    x, y, z = np.asarray(pos, dtype=np.float64).T
    out = np.empty((len(z), count))
    degree = int(np.ceil(np.sqrt(count))) - 1
    power = np.ones(len(z), dtype=complex)                     # (x + iy)^m
    for m in range(degree + 1):
        previous, current = None, np.full(len(z), float(np.prod(np.arange(1, 2 * m, 2))))
        for l in range(m, degree + 1):
            if l > m:
                following = (2 * l - 1) * z * current
                if previous is not None:
                    following -= (l + m - 1) * previous
                previous, current = current, following / (l - m)
            column = l * l + max(2 * m - 1, 0)                 # order: l, then m = 0, ±1, ±2 …
            for offset, part in ((0, power.real), (1, power.imag))[:1 + (m > 0)]:
                if column + offset < count:
                    np.multiply(current, part, out=out[:, column + offset])
        power *= x + 1j * y
    return out
