"""Smallest eigenpairs of a large sparse symmetric matrix in a few blocks of memory: LOBPCG
preconditioned by an algebraic-multigrid V-cycle.

Used where a sparse Cholesky factor would not fit: HEALPix maps of millions of pixels (the
factor of a 2-D grid grows as n log n, ≈ 20 GB at nside 1024) and large graphs (a non-planar
graph's factor fills in). Memory: five blocks of n × m doubles at the peak (m = k + guard
vectors: the iterate X, the search directions P, the residual R, the preconditioned residual W
and one V-cycle temporary) plus the matrix and its multigrid hierarchy (≈ 2× the matrix kept,
≈ 7× during the setup); every product with the matrix and every update is done in row chunks,
so no other n-sized temporary is made. lobpcg_bytes is the measured peak, allocator included.

  * LOBPCG (Knyazev 2001) with the orthonormal-basis (SVQB) form of Stathopoulos & Wu (2002)
    and Duersch et al. (2018): W and P are orthogonalised against X (and each other) and
    orthonormalised with a drop tolerance, so the Rayleigh–Ritz problem is a standard one;
  * preconditioner: one symmetric V-cycle (damped Jacobi smoothing, SWEEPS each way) on
    pyamg's smoothed-aggregation hierarchy (Vaněk, Mandel & Brezina 1996) of C + σI, applied to
    the whole block at once (sparse × dense block products, not vector by vector);
  * converged when every wanted pair's residual ‖C y − θ y‖ ≤ tol · max(θ_k, σ) (θ_k the largest
    wanted Ritz value): eigenvalues then agree with a machine-precision solver to ≈ tol²
    (1.5e-12 relative on the HEALPix graph at nside 128).

Measured against shift-invert block Lanczos in bench/RESULTS.md ("Large samples").
"""
from __future__ import annotations

import numpy as np

from gdl_data.lazy import lazy_module

linalg = lazy_module("scipy.linalg")
sp = lazy_module("scipy.sparse")

BLOCKS = 8             # for lobpcg_bytes: X, P, the residual, W, one V-cycle temporary, and
                       # ≈ 3 more of temporaries the allocator holds on to (measured)
AMG_SETUP = 80
AMG_KEPT = 28
SWEEPS = 2             # damped Jacobi sweeps before and after each coarse correction
CHUNK = 1 << 15        # rows per chunk of every block update: temporaries of CHUNK × m doubles
MAX_ITERATIONS = 300
DROP = 1e-12           # SVQB: directions whose Gram eigenvalue falls below this (relative) go


def guard_size(k: int) -> int:
    """Block size for k wanted pairs: extra vectors so the k-th converges at the rate of the gap
    to the (m+1)-th, not to the (k+1)-th (which may be a near-tie)."""
    return k + max(4, k // 4)


def lobpcg_bytes(n: int, nnz: int, k: int) -> int:
    """Peak memory of lobpcg_smallest on an n × n matrix with nnz stored entries (the matrix
    itself not counted): the larger of the multigrid setup (the start block, and pyamg's shifted
    copy, strength matrix, prolongators and Galerkin products: AMG_SETUP bytes an entry) and the
    iteration (BLOCKS blocks of n × m doubles and the hierarchy kept, AMG_KEPT bytes an entry),
    plus the row-chunk buffers. Constants measured with tracemalloc and peak RSS on HEALPix
    maps and kNN graphs (bench/RESULTS.md, "Memory estimates")."""
    m = min(guard_size(k), n)
    block = 8 * n * m
    chunk = 8 * min(CHUNK, n) * 8 * m
    return max(block + AMG_SETUP * nnz, BLOCKS * block + AMG_KEPT * nnz) + chunk


def lobpcg_smallest(C: sp.csr_matrix, k: int, tol: float, sigma: float, rng,
                    start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest eigenpairs (θ (k,), orthonormal Ritz vectors (n, k)) of C.

    C: (n, n) sparse symmetric positive semi-definite csr; sigma > 0: the shift that makes
    C + σI definite for the multigrid hierarchy, and the floor of the residual scale (module
    doc) when the wanted θ are 0; rng: for the start block; start: (n, j) columns to start from
    (e.g. spherical harmonics on the sphere), completed with random columns; with exactly
    guard_size(k) float64 columns it becomes the iterate itself (overwritten, no copy).
    Raises RuntimeError when it has not converged after MAX_ITERATIONS.
    """
    n = C.shape[0]
    m = min(guard_size(k), n)
    if start is not None and start.shape == (n, m) and start.dtype == np.float64 \
            and start.flags.c_contiguous:
        X = start
    else:
        X = rng.standard_normal((n, m))
        if start is not None:
            X[:, :min(m, start.shape[1])] = start[:, :m]
    del start
    rows = row_chunks(C)
    precondition = None        # built when first needed: a start that is already exact skips it
    X = _orthonormal(X, [])
    coeffs, theta = _ritz(rows, [X], m)
    X = _combine([X], coeffs, out=X)
    P = None
    for _ in range(MAX_ITERATIONS):
        R = np.empty_like(X)
        for sl, part in rows:
            R[sl] = part @ X - X[sl] * theta
        if np.all(np.linalg.norm(R[:, :k], axis=0) <= tol * max(theta[k - 1], sigma)):
            return theta[:k], X[:, :k]
        precondition = precondition or amg_vcycle(C, sigma)
        W = _orthonormal(precondition(R), [X])
        del R
        if not W.shape[1]:             # the residuals lie in span(X): X is invariant
            return theta[:k], X[:, :k]
        blocks = [X, W] + ([] if P is None else [_orthonormal(P, [X, W])])
        blocks = [b for b in blocks if b.shape[1]]
        coeffs, theta = _ritz(rows, blocks, m)
        P = _combine(blocks[1:], coeffs[1:], out=W if W.shape[1] == m else None)
        del W, blocks
        X = _combine([X, P], [coeffs[0], np.eye(m)], out=X)
    raise RuntimeError(f"LOBPCG did not converge in {MAX_ITERATIONS} iterations; write "
                       f"solver: block_lanczos (shift-invert; needs the memory of a factor)")


def row_chunks(A: sp.csr_matrix) -> list[tuple[slice, sp.csr_matrix]]:
    """A as CHUNK-row csr views (no copy): `part @ block` then makes CHUNK-row temporaries."""
    A = A.tocsr()
    out = []
    for lo in range(0, A.shape[0], CHUNK):
        hi = min(lo + CHUNK, A.shape[0])
        a, b = A.indptr[lo], A.indptr[hi]
        part = sp.csr_matrix((A.data[a:b], A.indices[a:b], A.indptr[lo:hi + 1] - a),
                             shape=(hi - lo, A.shape[1]), copy=False)
        out.append((slice(lo, hi), part))
    return out


def _combine(blocks: list[np.ndarray], coeffs: list[np.ndarray],
             out: np.ndarray | None = None) -> np.ndarray:
    """Σ blocks[i] @ coeffs[i], row chunk by row chunk, into `out` (which may be one of the
    blocks: each chunk is computed before it is written)."""
    n, width = blocks[0].shape[0], coeffs[0].shape[1]
    out = np.empty((n, width)) if out is None else out
    for lo in range(0, n, CHUNK):
        sl = slice(lo, min(lo + CHUNK, n))
        total = blocks[0][sl] @ coeffs[0]
        for block, coeff in zip(blocks[1:], coeffs[1:]):
            total += block[sl] @ coeff
        out[sl] = total
    return out


def _orthonormal(V: np.ndarray, against: list[np.ndarray]) -> np.ndarray:
    """V's columns made orthogonal to the orthonormal blocks `against` and orthonormal (SVQB,
    Stathopoulos & Wu 2002), dependent directions dropped. Projection and normalisation are one
    pass over V; the Gram matrix of the projected V is formed from V'V and the coefficients, so
    a second pass is made only where projecting removed over half of a column's norm squared
    (the "twice is enough" test: Giraud et al. 2005)."""
    for _ in range(2):
        coeffs = [B.T @ V for B in against]
        gram = V.T @ V
        before = gram.diagonal().copy()
        for coeff in coeffs:
            gram -= coeff.T @ coeff
        scale = 1.0 / np.sqrt(np.maximum(gram.diagonal(), np.finfo(float).tiny))
        values, vectors = np.linalg.eigh(0.5 * (gram + gram.T) * np.outer(scale, scale))
        keep = values > DROP * max(values[-1], 0.0)
        if not keep.any():
            return V[:, :0]
        transform = scale[:, None] * vectors[:, keep] / np.sqrt(values[keep])
        V = _combine([V] + against, [transform] + [-c @ transform for c in coeffs],
                     out=V if keep.all() else None)
        if np.all(gram.diagonal() >= 0.5 * before):
            break
    return V


def _ritz(rows, blocks: list[np.ndarray], m: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Rayleigh–Ritz on the span of [blocks] (orthonormal up to rounding; their Gram matrix is
    formed in the same pass, so rounding there costs no accuracy): (coefficients of the m lowest
    Ritz vectors, split by block, and their Ritz values)."""
    sizes = [b.shape[1] for b in blocks]
    edges = np.concatenate([[0], np.cumsum(sizes)])
    H = np.zeros((edges[-1], edges[-1]))
    G = np.zeros_like(H)
    basis = np.empty((min(CHUNK, blocks[0].shape[0]), edges[-1]))   # a chunk of [blocks] …
    product = np.empty_like(basis)                                    # … and of C [blocks]
    for sl, part in rows:
        rows_here = sl.stop - sl.start
        for block, lo, hi in zip(blocks, edges[:-1], edges[1:]):
            basis[:rows_here, lo:hi] = block[sl]
            product[:rows_here, lo:hi] = part @ block
        H += basis[:rows_here].T @ product[:rows_here]
        G += basis[:rows_here].T @ basis[:rows_here]
    theta, vectors = linalg.eigh(0.5 * (H + H.T), 0.5 * (G + G.T), subset_by_index=[0, m - 1])
    return np.split(vectors, edges[1:-1], axis=0), theta


def amg_vcycle(C: sp.csr_matrix, sigma: float):
    """block (n, m) -> one symmetric V-cycle for (C + σI) x = block (block is overwritten).

    pyamg's smoothed-aggregation hierarchy of C + σI; damped Jacobi, ω = 4 / (3 ρ) with ρ the
    Gershgorin bound of D⁻¹A (2 for a Laplacian), SWEEPS sweeps before and after the coarse
    correction; the coarsest level (≤ 500 unknowns) solved by dense Cholesky. The finest level
    works on C itself (σ added on the fly), so the shifted copy lives only during the setup.
    """
    import pyamg

    shifted = (C + sigma * sp.identity(C.shape[0], format="csr")).tocsr()
    hierarchy = pyamg.smoothed_aggregation_solver(shifted, B=np.ones((C.shape[0], 1)),
                                                  max_coarse=500, keep=False)
    del shifted
    levels = []
    for depth, level in enumerate(hierarchy.levels):
        A, shift = (C, sigma) if depth == 0 else (level.A, 0.0)
        diagonal = A.diagonal() + shift
        spread = (np.asarray(abs(A).sum(axis=1)).ravel() + shift) / diagonal
        levels.append((row_chunks(A), shift, 4.0 / (3.0 * spread.max()) / diagonal,
                       getattr(level, "P", None), getattr(level, "R", None)))
    coarse = linalg.cho_factor(hierarchy.levels[-1].A.toarray())
    hierarchy.levels[0].A = None
    del hierarchy
    release_freed_memory()         # the setup's freed temporaries: ≈ 3× what it keeps

    def cycle(depth: int, r: np.ndarray) -> np.ndarray:
        rows, shift, weight, P, R = levels[depth]
        if depth == len(levels) - 1:
            return linalg.cho_solve(coarse, r)
        x = np.zeros_like(r)
        _jacobi(rows, shift, weight, x, r, last_residual=True)   # r: the residual from here on
        correction = P @ cycle(depth + 1, R @ r)
        x += correction
        _subtract_product(rows, shift, r, correction)
        del correction
        _jacobi(rows, shift, weight, x, r, last_residual=False)
        return x

    return lambda block: cycle(0, block)


def release_freed_memory() -> None:
    """Hand memory that was freed back to the OS (glibc keeps freed medium-sized blocks in its
    heap, so RSS would stay at the setup's peak; Dask's documentation recommends the same
    malloc_trim for its workers)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):            # not glibc: nothing to do
        pass


def _jacobi(rows, shift: float, weight: np.ndarray, x: np.ndarray, r: np.ndarray,
            last_residual: bool) -> None:
    """SWEEPS damped Jacobi sweeps x += ω D⁻¹ r on (A + shift I) x = b, r = b − (A + shift I) x
    kept up to date (after the last sweep only if `last_residual`); one temporary block."""
    delta = np.empty_like(r)
    for sweep in range(SWEEPS):
        np.multiply(weight[:, None], r, out=delta)
        x += delta
        if last_residual or sweep < SWEEPS - 1:
            _subtract_product(rows, shift, r, delta)


def _subtract_product(rows, shift: float, r: np.ndarray, v: np.ndarray) -> None:
    """r −= (A + shift I) v, by row chunks of A."""
    for sl, part in rows:
        r[sl] -= part @ v + shift * v[sl]
