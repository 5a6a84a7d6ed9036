"""The HEALPix pixel graph of DeepSphere and the real spherical harmonics at pixel centres.

HEALPix (Górski et al. 2005, healpy) pixels are equal-area, so pixel centres are a fair sample of
the sphere. DeepSphere (Perraudin et al. 2019) connects each pixel to its 8 (or 7) neighbours
with Gaussian-kernel weights w = exp(−d² / (4t)), d the Euclidean distance between the unit
pixel centres and t half the mean of d² over all edges (DeepSphere's `kernel_width`), whose
graph Laplacian approximates the Laplace–Beltrami operator.
"""
from __future__ import annotations

import numpy as np

from gdl_data.ops.neighbor_graphs import healpix_edge_index


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
    pos = pixel_centres(nside)
    squared = np.sum((pos[edge_index[0]] - pos[edge_index[1]]) ** 2, axis=1)
    t = 0.5 * squared.mean()
    return edge_index, np.exp(-squared / (4.0 * t))


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
