"""Smallest eigenpairs of a large sparse symmetric matrix in a few blocks of memory: LOBPCG
preconditioned by an algebraic-multigrid V-cycle.

Used where a sparse Cholesky factor would not fit: HEALPix maps of millions of pixels (the
factor of a 2-D grid grows as n log n, ≈ 20 GB at nside 1024) and large graphs (a non-planar
graph's factor fills in). Memory: at the peak, the iterate X and the search directions P
(n × m doubles each, m = k + guard vectors) and the V-cycle's float32 blocks (its input, the
residuals of the pairs not yet converged, and three temporaries), plus the matrix and its
float32 multigrid hierarchy (≈ 0.8× the matrix kept, ≈ 5× during the setup); every product
with the matrix and every update is done in row chunks, so no other n-sized temporary is made.
lobpcg_bytes is the measured peak, allocator included.

  * LOBPCG (Knyazev 2001) with the orthonormal-basis (SVQB) form of Stathopoulos & Wu (2002)
    and Duersch et al. (2018): W and P are orthogonalised against X (and each other) and
    orthonormalised with a drop tolerance, so the Rayleigh–Ritz problem is a standard one;
    soft locking (Knyazev et al. 2007, BLOPEX): a pair whose residual is already below the
    tolerance gets no new direction, but stays in X and in every Rayleigh–Ritz step;
  * preconditioner: one symmetric V-cycle (damped Jacobi smoothing, SWEEPS each way) on
    pyamg's smoothed-aggregation hierarchy (Vaněk, Mandel & Brezina 1996) of C + σI, applied to
    the whole block at once (sparse × dense block products, not vector by vector), in float32:
    a preconditioner only has to be fixed, not accurate; its rounding, amplified most in the
    lowest modes, lands in span(X), which W is projected off (same iteration count as float64
    on the HEALPix graph). X, P, W and Rayleigh–Ritz stay float64;
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

BLOCKS = 5.5           # for lobpcg_bytes, in blocks of n × m doubles: X and P, the V-cycle's three
                       # float32 blocks (its input, x, one smoothing step or the coarse correction),
                       # and ≈ 2 more of chunk temporaries the allocator holds on to (measured)
AMG_SETUP = 75         # bytes an entry of the matrix at the multigrid setup's peak (measured)
AMG_KEPT = 16          # bytes an entry of the float32 hierarchy kept (measured)
SWEEPS = 2             # damped Jacobi sweeps before and after each coarse correction
CHUNK = 1 << 15        # rows per chunk of every block update: temporaries of CHUNK × m doubles
MAX_ITERATIONS = 300
DROP = 1e-12           # SVQB: directions whose Gram eigenvalue falls below this (relative) go


def guard_size(k: int) -> int:
    """Block size for k wanted pairs: extra vectors so the k-th converges at the rate of the gap
    to the (m+1)-th, not to the (k+1)-th (which may be a near-tie)."""
    return k + max(4, k // 4)


def lobpcg_bytes(n: int, nnz: int, m: int) -> int:
    """Peak memory of lobpcg_smallest with a block of m columns on an n × n matrix with nnz
    stored entries (the matrix itself not counted): the larger of the multigrid setup (before
    the block exists: pyamg's shifted copy, prolongators and Galerkin products, AMG_SETUP bytes
    an entry) and the iteration (BLOCKS blocks of n × m doubles and the hierarchy kept, AMG_KEPT
    bytes an entry), plus the row-chunk buffers. Constants measured with peak RSS on HEALPix
    maps and kNN graphs (bench/RESULTS.md, "Memory estimates")."""
    m = min(m, n)
    block = 8 * n * m
    chunk = 8 * min(CHUNK, n) * 8 * m
    return int(max(AMG_SETUP * nnz, BLOCKS * block + AMG_KEPT * nnz) + chunk)


def lobpcg_smallest(C: sp.csr_matrix, k: int, tol: float, sigma: float, rng, start=None,
                    block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest eigenpairs (θ (k,), orthonormal Ritz vectors (n, k)) of C.

    C: (n, n) sparse symmetric positive semi-definite csr; sigma > 0: the shift that makes
    C + σI definite for the multigrid hierarchy, and the floor of the residual scale (module
    doc) when the wanted θ are 0; rng: for random start columns; block: the iterate's columns
    (default guard_size(k), at least k; on the sphere healpix.harmonic_block: the rest of the
    k-th pair's degree is the guard); start: None, (n, j) columns to start from (e.g. spherical
    harmonics), or a function block -> such columns, called once the multigrid hierarchy is
    built (so the setup's peak and the block never coincide). Missing columns are random; a
    C-contiguous float64 start of the block's shape becomes the iterate itself (no copy).
    Soft locking: only pairs not yet converged (and guard columns) get a preconditioned residual
    and a search direction, so the work per iteration shrinks as pairs converge.
    Raises RuntimeError when it has not converged after MAX_ITERATIONS.
    """
    n = C.shape[0]
    m = min(max(k, block or guard_size(k)), n)
    rows = row_chunks(C)
    precondition = amg_vcycle(C, sigma)
    X = _start_block(n, m, rng, start(m) if callable(start) else start)
    del start
    X = _orthonormal(X, [])
    coeffs, theta = _ritz(rows, [X], m)
    X = _combine([X], coeffs, out=X)
    P = None
    for _ in range(MAX_ITERATIONS):
        R, norms = _residual(rows, X, theta)
        active = np.flatnonzero((norms > tol * max(theta[k - 1], sigma)) | (np.arange(m) >= k))
        if len(active) == m - k:
            return theta[:k], X[:, :k]
        # C order throughout: scipy copies a whole non-contiguous block for each sparse product
        # (and R[:, active] is not C-ordered).
        R = R if len(active) == m else np.ascontiguousarray(R[:, active])
        W = precondition(R)
        del R
        W = W.astype(np.float64, order="C")
        W = _orthonormal(W, [X])
        if not W.shape[1]:             # the residuals lie in span(X): X is invariant
            return theta[:k], X[:, :k]
        blocks = [X, W] + ([] if P is None else [_orthonormal(P, [X, W])])
        blocks = [b for b in blocks if b.shape[1]]
        coeffs, theta = _ritz(rows, blocks, m, theta)
        P = _update(blocks, coeffs, active)
        del W, blocks
    raise RuntimeError(f"LOBPCG did not converge in {MAX_ITERATIONS} iterations; write "
                       f"solver: block_lanczos (shift-invert; needs the memory of a factor)")


def _start_block(n: int, m: int, rng, start: np.ndarray | None) -> np.ndarray:
    """The (n, m) float64 start: `start` itself when it has that shape (no copy), else its
    columns completed (or cut) with random ones."""
    if start is not None and start.shape == (n, m) and start.dtype == np.float64 \
            and start.flags.c_contiguous:
        return start
    X = rng.standard_normal((n, m))
    if start is not None:
        X[:, :min(m, start.shape[1])] = start[:, :m]
    return X


def _residual(rows, X: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the residuals C x_j − θ_j x_j (n, m) in float32: the preconditioner's input, whose
    precision it does not need (module doc); their norms (m,), from the float64 values)."""
    R = np.empty(X.shape, dtype=np.float32)
    squares = np.zeros(X.shape[1])
    for sl, part in rows:
        chunk = part @ X - X[sl] * theta
        squares += np.einsum("ij,ij->j", chunk, chunk)
        R[sl] = chunk
    return R, np.sqrt(squares)


def _update(blocks: list[np.ndarray], coeffs: list[np.ndarray], active: np.ndarray):
    """One pass over the rows: X ← Σ blocks[i] coeffs[i] (the new Ritz vectors, in place of
    X = blocks[0]) and the new search directions P = Σ_{i≥1} blocks[i] coeffs[i][:, active]
    (their parts outside span(X)), written in place of blocks[1] when the widths agree.
    Returns P."""
    X, n = blocks[0], blocks[0].shape[0]
    P = blocks[1] if blocks[1].shape[1] == len(active) else np.empty((n, len(active)))
    for lo in range(0, n, CHUNK):
        sl = slice(lo, min(lo + CHUNK, n))
        direction = sum(b[sl] @ c for b, c in zip(blocks[1:], coeffs[1:]))
        X[sl] = X[sl] @ coeffs[0] + direction
        P[sl] = direction[:, active]
    return P


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
    pass over V; the Gram matrix of the projected V is formed from V'V and the coefficients. One
    pass leaves an error of ≈ ε · (the norm V had / the norm it kept), and ≈ ε / √g for g the
    smallest eigenvalue of V's scaled Gram matrix, so a second pass is made only where either
    ratio exceeds 10 (CGS2, "twice is enough": Giraud et al. 2005): the result is then
    orthonormal to ≈ 10 ε, as Rayleigh–Ritz (_ritz) assumes."""
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
        if np.all(gram.diagonal() >= 1e-2 * before) and values[keep][0] >= 1e-2:
            break
    return V


def _ritz(rows, blocks: list[np.ndarray], m: int,
          theta: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Rayleigh–Ritz on the span of [blocks], which are orthonormal (to ≈ 10 ε: _orthonormal),
    so the projected problem is a standard one (Duersch et al. 2018): (coefficients of the m
    lowest Ritz vectors, split by block, and their Ritz values). Only the blocks of [blocks]ᵀ C
    [blocks] on and above the diagonal are formed (≈ 2/3 of the products); the others are their
    transposes. theta: when blocks[0] holds Ritz vectors with these Ritz values, Xᵀ C X is
    diag(theta) and C X is not formed (the rounding of either way is ≈ ε ‖C‖)."""
    sizes = [b.shape[1] for b in blocks]
    edges = np.concatenate([[0], np.cumsum(sizes)])
    H = np.zeros((edges[-1], edges[-1]))
    first = 0 if theta is None else 1         # the first block whose product with C is needed
    product = np.empty((min(CHUNK, blocks[0].shape[0]), edges[-1]))   # a chunk of C [blocks]
    for sl, part in rows:
        rows_here = sl.stop - sl.start
        for block, lo, hi in list(zip(blocks, edges[:-1], edges[1:]))[first:]:
            product[:rows_here, lo:hi] = part @ block
        for i, (block, lo, hi) in enumerate(zip(blocks, edges[:-1], edges[1:])):
            start = edges[first] if i == 0 else lo
            H[lo:hi, start:] += block[sl].T @ product[:rows_here, start:]
    if first:
        H[:sizes[0], :sizes[0]] = np.diag(theta)
    H += H.T                           # the blocks below the diagonal; diagonal blocks doubled
    for lo, hi in zip(edges[:-1], edges[1:]):
        H[lo:hi, lo:hi] *= 0.5
    theta, vectors = linalg.eigh(H, subset_by_index=[0, m - 1])
    return np.split(vectors, edges[1:-1], axis=0), theta


def amg_vcycle(C: sp.csr_matrix, sigma: float):
    """block (n, j) float32 -> one symmetric V-cycle for (C + σI) x = block, in float32 (the
    block is overwritten).

    pyamg's smoothed-aggregation hierarchy of C + σI; damped Jacobi, ω = 4 / (3 ρ) with ρ the
    Gershgorin bound of D⁻¹A (2 for a Laplacian), SWEEPS sweeps before and after the coarse
    correction; the coarsest level (≤ 500 unknowns) solved by dense Cholesky (its pseudo-inverse
    where singular). Every level is
    kept in float32 (half the memory and memory traffic of float64; the preconditioner need not
    be accurate, only fixed); the finest level is C's own structure with float32 values (σ added
    on the fly), so the shifted copy lives only during the setup.
    """
    import pyamg

    shifted = (C + sigma * sp.identity(C.shape[0], format="csr")).tocsr()
    # Every connection counts as strong (strength None: the matrix itself, not a filtered copy;
    # pyamg's default, theta 0, drops none of a Laplacian's either) and pyamg's own smoothers are
    # not set up (cycle() below has its own): the same hierarchy, the setup's peak ≈ 500 bytes
    # a pixel on the HEALPix graph instead of ≈ 620 (bench/RESULTS.md, "Large samples").
    hierarchy = pyamg.smoothed_aggregation_solver(
        shifted, B=np.ones((C.shape[0], 1)), strength=None, max_coarse=500, keep=False,
        presmoother=None, postsmoother=None)
    del shifted
    levels = []
    for depth, level in enumerate(hierarchy.levels[:-1]):     # the coarsest: solved directly
        A, shift = (C, sigma) if depth == 0 else (level.A, 0.0)
        diagonal = A.diagonal() + shift
        spread = (_absolute_row_sums(A) + shift) / diagonal
        weight = (4.0 / (3.0 * spread.max()) / diagonal).astype(np.float32)
        levels.append((row_chunks(_single(A)), shift, weight, _single(getattr(level, "P", None)),
                       _single(getattr(level, "R", None))))
    coarse = _coarse_solver(hierarchy.levels[-1].A.toarray().astype(np.float32))
    level = hierarchy = None       # the float64 matrices go before the trim below
    release_freed_memory()         # the setup's freed temporaries: ≈ 3× what it keeps

    def cycle(depth: int, r: np.ndarray) -> np.ndarray:
        if depth == len(levels):
            return coarse(r)
        rows, shift, weight, P, R = levels[depth]
        x = np.zeros_like(r)
        _jacobi(rows, shift, weight, x, r, last_residual=True)   # r: the residual from here on
        correction = P @ cycle(depth + 1, R @ r)
        x += correction
        _subtract_product(rows, shift, r, correction)
        del correction
        _jacobi(rows, shift, weight, x, r, last_residual=False)
        return x

    return lambda block: cycle(0, block)


def _coarse_solver(A: np.ndarray):
    """r -> A⁻¹ r by dense Cholesky; by the pseudo-inverse where A is singular (a graph without
    edges: no node has a strong connection, and pyamg's coarsest level is an empty 1 × 1)."""
    try:
        factor = linalg.cho_factor(A)
        return lambda r: linalg.cho_solve(factor, r)
    except np.linalg.LinAlgError:
        inverse = linalg.pinvh(A).astype(A.dtype)
        return lambda r: inverse @ r


def _absolute_row_sums(A: sp.csr_matrix) -> np.ndarray:
    """Σ_j |a_ij| per row, by row chunks (abs(A) would copy the whole matrix)."""
    return np.concatenate([np.asarray(abs(part).sum(axis=1)).ravel() for _, part in row_chunks(A)])


def _single(A: sp.csr_matrix | None) -> sp.csr_matrix | None:
    """A with float32 values, sharing A's index arrays when it is csr already."""
    if A is None:
        return None
    A = A.tocsr()
    return sp.csr_matrix((A.data.astype(np.float32), A.indices, A.indptr), shape=A.shape,
                         copy=False)


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
