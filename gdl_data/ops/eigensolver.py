"""Smallest eigenpairs of L φ = λ M φ, L sparse symmetric positive semi-definite, M diagonal > 0.

The default solver is a block Lanczos iteration on the shift-inverted operator
(Golub & Underwood 1977; shift-invert: Ericsson & Ruhe 1980) with full reorthogonalisation:

  * the problem is taken in standard form C = M^-½ L M^-½ (M is lumped, so this is exact);
  * K = C − σI is factored once by a sparse Cholesky (CHOLMOD, through cholespy), and each
    Lanczos step solves K for a whole block of right-hand sides at once;
  * each new block is orthogonalised by the three-term recurrence and then one full block
    Gram–Schmidt pass (full reorthogonalisation): two large matrix products per block instead
    of ARPACK's vector-at-a-time updates;
  * it stops when every wanted Ritz pair's residual, read off the Lanczos relation, is below `tol`
    relative to its Ritz value; eigenvalues are then the Rayleigh quotients of the Ritz vectors.

Measured against scipy's ARPACK shift-invert (the DiffusionNet recipe) in bench/eigenbasis.py.
The shift is set from the operator's own scale (σ = −trace(C) / n², about λ1 / 7 on a sphere),
so any unit of length gives the same iteration. ARPACK (with
the same factor) stays available as `solver="arpack"` and is the fallback when the block
iteration does not converge within its basis budget; small problems are solved densely.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from gdl_data.lazy import lazy_module

linalg = lazy_module("scipy.linalg")
sp = lazy_module("scipy.sparse")
sla = lazy_module("scipy.sparse.linalg")

SOLVERS = ("auto", "block_lanczos", "arpack", "lobpcg")
# "auto" (auto_solver): shift-invert block Lanczos always on meshes (a surface's Cholesky factor
# stays near n log n), up to these many unknowns on HEALPix maps and on graphs, AMG-
# preconditioned LOBPCG above them (the HEALPix factor outgrows LOBPCG's blocks, nside 1024
# ≈ 20 GB; a non-planar graph's factor fills in).
ITERATIVE_ABOVE = 50_000
GRAPH_ITERATIVE_ABOVE = 5_000
BLOCK_SIZE = 16       # right-hand sides per solve: 8-16 need the smallest basis, 16 the least time
CHECK_GROWTH = 1.1    # a Ritz check (O(m³)) each time the basis has grown 10 %: ≤ 10 % overshoot


def auto_solver(n: int, kind: str) -> str:
    """The solver "auto" means for n unknowns of a `kind` of matrix: "surface" (meshes: a
    Cholesky factor of n log n) block_lanczos always; "grid" (the HEALPix graph: planar, but the
    factor outgrows a few blocks) block_lanczos up to ITERATIVE_ABOVE; "graph" (any graph: the
    factor may fill in up to n²/2) up to GRAPH_ITERATIVE_ABOVE; lobpcg above."""
    limit = {"surface": None, "grid": ITERATIVE_ABOVE, "graph": GRAPH_ITERATIVE_ABOVE}[kind]
    return "block_lanczos" if limit is None or n <= limit else "lobpcg"


def solver_bytes(n: int, nnz: int, k: int, solver: str, dense_below: int,
                 factor_entries: float, block: int | None = None) -> int:
    """Peak memory of smallest_eigenpairs (its input matrix not counted) for an n × n matrix
    with nnz stored entries and k pairs; factor_entries: the Cholesky factor's expected
    entries (the caller knows its matrix's fill: n log n on surfaces, ≤ n²/2 on graphs);
    block: LOBPCG's block columns (default lobpcg.guard_size(k); on the sphere
    healpix.harmonic_block).

    dense: the matrix as an array, LAPACK's copy and the eigenvectors (3 × 8n²);
    lobpcg: lobpcg_bytes; block Lanczos / ARPACK: the scaled, symmetrised and shifted copies of
    the matrix (5 × 12 bytes an entry), the factor (12 bytes an entry) and the whole basis
    budget (≈ 8k + 128 vectors of n) with its projected matrix.
    Every path adds the results (the eigenvectors and their mass-scaled copy: 2 × 8nk; LOBPCG's
    blocks outlast its result, which is counted among them).
    """
    from gdl_data.ops.lobpcg import guard_size, lobpcg_bytes

    k = min(k, n)
    results = 2 * 8 * n * k
    if n <= dense_below or 2 * k >= n:
        return 3 * 8 * n * n + results
    if solver == "lobpcg":
        return lobpcg_bytes(n, nnz, block or guard_size(k))
    budget = min(n // BLOCK_SIZE, (8 * k) // BLOCK_SIZE + 8) * BLOCK_SIZE
    return int(5 * 12 * nnz + 12 * factor_entries + 8 * budget * (n + budget)) + results


def smallest_eigenpairs(L, mass, k: int, *, solver: str = "block_lanczos", tol: float = 1e-6,
                        dense_below: int = 1000, seed: int = 0, start=None,
                        block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest eigenpairs of L φ = λ M φ with M = diag(mass).

    L: (n, n) sparse symmetric positive semi-definite (or a dense ndarray: solved densely);
    mass: (n,) positive; k ≥ 1.
    solver: "block_lanczos" (default), "arpack" (run to machine precision), "lobpcg"
    (AMG-preconditioned, no factor: gdl_data/ops/lobpcg.py) or "auto" (auto_solver, as a
    graph); tol: relative residual of each pair block Lanczos or LOBPCG returns (default 1e-6:
    eigenvalues exact to ≈1e-12);
    dense_below: problems with n ≤ this, or k ≥ n / 2, are solved by dense LAPACK (exact to
    rounding);
    seed: of the Lanczos start block (fixed, so the same input gives byte-identical output);
    start, block: LOBPCG's start columns (e.g. spherical harmonics; or a function of the
    block's width giving them, called after the multigrid setup) and its block width
    (lobpcg.lobpcg_smallest).
    When k ≥ n all n pairs are returned (dense), with a warning.

    Returns (evals (k,), evecs (n, k)): ascending, φᵀ M φ = I, each column's entry of largest
    magnitude positive (ties: the lowest index) so that signs are reproducible.
    """
    mass = np.asarray(mass, dtype=np.float64)
    n = len(mass)
    if not np.all(np.isfinite(mass) & (mass > 0)):
        raise ValueError("the mass matrix must be positive and finite at every vertex")
    if k >= n:
        warn_all_pairs(k, n)
        k = n
    inv_sqrt_mass = 1.0 / np.sqrt(mass)
    if isinstance(L, np.ndarray):      # small problems built dense (laplacian.dense_graph_laplacian)
        C = L * inv_sqrt_mass[:, None] * inv_sqrt_mass[None, :]
        evals, y = np.linalg.eigh((C + C.T) * 0.5)
        return np.maximum(evals[:k], 0.0), fix_signs(y[:, :k] * inv_sqrt_mass[:, None])
    solver = auto_solver(n, "graph") if solver == "auto" else solver
    if solver == "lobpcg" and n > dense_below and 2 * k < n:
        evals, y = _lobpcg(L, inv_sqrt_mass, k, tol, np.random.default_rng(seed), start, block)
        if np.any(inv_sqrt_mass != 1.0):
            y *= inv_sqrt_mass[:, None]
        return evals, fix_signs(y)
    C = sp.diags(inv_sqrt_mass) @ sp.csr_matrix(L, dtype=np.float64) @ sp.diags(inv_sqrt_mass)
    C = ((C + C.T) * 0.5).tocsr()      # exact symmetry: the Lanczos relation assumes it
    if n <= dense_below or 2 * k >= n:
        evals, y = np.linalg.eigh(C.toarray())
        evals, y = evals[:k], y[:, :k]
    else:
        sigma = -(C.diagonal().sum() / float(n) ** 2 or 1.0)     # 1.0: C = 0 (no edges at all)
        solve = _shifted_solver(C, sigma)
        y = None
        if solver == "block_lanczos":
            y = _block_lanczos(C, solve, k, tol, np.random.default_rng(seed))
            if y is None:
                warnings.warn("block Lanczos did not converge within its basis budget; "
                              "falling back to ARPACK", stacklevel=2)
        if y is None:
            y = _arpack(C, solve, sigma, k, np.random.default_rng(seed))
        evals = np.einsum("ij,ij->j", y, C @ y)      # Rayleigh quotients: best for these vectors
        order = np.argsort(evals, kind="stable")
        evals, y = evals[order], y[:, order]
    evecs = y * inv_sqrt_mass[:, None]
    return np.maximum(evals, 0.0), fix_signs(evecs)


def _lobpcg(L, inv_sqrt_mass, k: int, tol: float, rng, start,
            block) -> tuple[np.ndarray, np.ndarray]:
    """(evals, y) of C = M^-½ L M^-½ by LOBPCG, sorted; C is L itself when the mass is ones
    (no copy: at nside 1024 one copy is 1.4 GB), and is not symmetrised (Rayleigh–Ritz
    symmetrises the small projected matrices instead). σ as for shift-invert."""
    from gdl_data.ops.lobpcg import lobpcg_smallest

    n = len(inv_sqrt_mass)
    C = sp.csr_matrix(L, dtype=np.float64)
    if np.any(inv_sqrt_mass != 1.0):
        C = (sp.diags(inv_sqrt_mass) @ C @ sp.diags(inv_sqrt_mass)).tocsr()
        if start is not None:                                                   # M^½ start
            given = start
            start = lambda width: np.asarray(given(width) if callable(given) else given,
                                             dtype=np.float64) / inv_sqrt_mass[:, None]
    C.sort_indices()
    sigma = C.diagonal().sum() / float(n) ** 2 or 1.0        # 1.0: C = 0 (no edges at all)
    evals, y = lobpcg_smallest(C, k, tol, sigma, rng, start, block)
    order = np.argsort(evals, kind="stable")
    y = y[:, order]                    # a copy (its own memory): X's other columns can go
    return np.maximum(evals[order], 0.0), y


def warn_all_pairs(k: int, n: int) -> None:
    """The warning for k ≥ n: all n pairs are returned (pointing at the op's caller)."""
    warnings.warn(f"k={k} eigenpairs asked of a problem of size {n}: returning all {n}", stacklevel=3)


def dense_smallest_eigenpairs(laplacians: Sequence[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`smallest_eigenpairs(L, ones, k)` of many small dense L, byte for byte the same, faster:
    the matrices of one size go to LAPACK in one stacked call (numpy runs the same routine on
    each) and have their signs fixed together. For molecules, where one call's overhead is
    several times the 20 × 20 solve itself.

    laplacians: (n_i, n_i) symmetric ndarrays (any mix of sizes); k ≥ 1.
    Returns [(evals (min(k, n_i),), evecs (n_i, min(k, n_i))), ...] in the order given.
    """
    out: list[tuple[np.ndarray, np.ndarray]] = [None] * len(laplacians)
    by_size: dict[int, list[int]] = {}
    for i, L in enumerate(laplacians):
        by_size.setdefault(L.shape[0], []).append(i)
    for n, members in by_size.items():
        if k >= n:
            warn_all_pairs(k, n)
        m = min(k, n)
        C = np.stack([laplacians[i] for i in members])
        evals, y = np.linalg.eigh((C + C.transpose(0, 2, 1)) * 0.5)
        evals, y = np.maximum(evals[:, :m], 0.0), fix_signs_stacked(np.ascontiguousarray(y[:, :, :m]))
        for j, i in enumerate(members):
            out[i] = (evals[j], y[j])
    return out


def fix_signs_stacked(vectors: np.ndarray) -> np.ndarray:
    """fix_signs of each (n, k) matrix of a (b, n, k) stack, in place, with the same rule."""
    magnitude = np.abs(vectors)
    tied = magnitude >= (1.0 - 1e-6) * magnitude.max(axis=1, keepdims=True, initial=0.0)
    pivot = np.take_along_axis(vectors, np.argmax(tied, axis=1)[:, None, :], axis=1)
    vectors *= np.where(pivot < 0, -1.0, 1.0)
    return vectors


def fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip columns so each one's entry of largest magnitude is positive, in place.

    Entries within a relative 1e-6 of the largest count as tied and the lowest index decides,
    so symmetric shapes (where two entries are equal up to rounding) still get one answer.
    Column by column, so no temporary larger than one column is made.
    """
    for j in range(vectors.shape[1]):
        magnitude = np.abs(vectors[:, j])
        pivot = int(np.argmax(magnitude >= (1.0 - 1e-6) * magnitude.max(initial=0.0)))
        if vectors[pivot, j] < 0:
            vectors[:, j] *= -1.0
    return vectors


def _shifted_solver(C, sigma: float):
    """x = (C − σI)⁻¹ b for blocks b (n, r): Cholesky via cholespy, SuperLU if that refuses."""
    K = (C - sigma * sp.identity(C.shape[0], format="csr")).tocsc()
    K.sort_indices()
    try:
        import cholespy

        factor = cholespy.CholeskySolverD(K.shape[0], K.indptr.astype(np.int32),
                                          K.indices.astype(np.int32), K.data,
                                          cholespy.MatrixType.CSC)
    except (ImportError, ValueError, RuntimeError):    # ValueError: not positive definite
        return sla.splu(K).solve

    def solve(b: np.ndarray) -> np.ndarray:
        b = np.ascontiguousarray(b, dtype=np.float64)
        x = np.empty_like(b)
        factor.solve(b, x)
        return x
    return solve


def _block_lanczos(C, solve, k: int, tol: float, rng) -> np.ndarray | None:
    """Orthonormal Ritz vectors (n, k) of the k largest eigenvalues of A = (C − σI)⁻¹, or None.

    Basis Q (rows of `basis`, one block of b per step) with A Q_j = Σ_i Q_i H_ij + Q_{j+1} R_j;
    the Ritz pairs come from the projected matrix H and their residuals from R_j alone.
    """
    n = C.shape[0]
    b = min(BLOCK_SIZE, n)
    budget = min(n // b, (8 * k) // b + 8) * b     # at most ~8k vectors: memory n × 8k doubles
    basis = np.empty((budget, n))                  # pages are touched only as blocks are added
    projected = np.zeros((budget, budget))
    basis[:b] = np.linalg.qr(rng.standard_normal((n, b)))[0].T
    next_check = k + b                              # basis size of the next Ritz check
    for step in range(budget // b):
        lo, hi = step * b, (step + 1) * b
        w = solve(basis[lo:hi].T)
        scale = np.linalg.norm(w, axis=0).max()
        coeffs, w = _orthogonalise(w, basis[:hi], b)
        projected[:hi, lo:hi] = coeffs
        q_next, r_next = _next_block(w, basis[:hi], scale, rng)
        if hi >= next_check or hi + b > budget:
            h = projected[:hi, :hi]
            theta, ritz = linalg.eigh(0.5 * (h + h.T), subset_by_index=[hi - k, hi - 1],
                                            driver="evr")          # only the k wanted pairs
            residual = np.linalg.norm(r_next @ ritz[-b:], axis=0)
            if np.all(residual <= tol * np.abs(theta)):
                return basis[:hi].T @ ritz
            next_check = CHECK_GROWTH * hi
        if hi + b > budget:
            return None
        basis[hi:hi + b] = q_next.T
        projected[hi:hi + b, lo:hi] = r_next
    return None


def _orthogonalise(w: np.ndarray, basis: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """w (n, b) = A Q_j made orthogonal to the rows of basis (its last b rows: Q_j): (coeffs, w⊥).

    First the block three-term recurrence (against Q_{j−1} and Q_j, where all of w lies in exact
    arithmetic), then one classical Gram–Schmidt pass against the whole basis for what rounding
    put elsewhere: two sweeps over the basis per step instead of CGS2's four.
    """
    coeffs = np.zeros((len(basis), w.shape[1]))
    recent = basis[max(len(basis) - 2 * b, 0):]
    local = recent @ w
    w = w - recent.T @ local
    coeffs[len(basis) - len(recent):] = local
    full = basis @ w
    w -= basis.T @ full
    return coeffs + full, w


def _next_block(w: np.ndarray, basis: np.ndarray, scale: float,
                rng) -> tuple[np.ndarray, np.ndarray]:
    """(q, r) with w = q r, q orthonormal and orthogonal to the basis rows; scale: w's norm
    before orthogonalisation, against which lost rank is judged.

    Where w has lost rank (the Krylov space met an invariant subspace, e.g. a graph of isolated
    nodes), q is completed with random directions orthogonal to everything so far, so the
    iteration goes on; r then holds w's (near-zero) coordinates on them.
    """
    q, r = np.linalg.qr(w)
    lost = np.abs(np.diag(r)) <= 1e-10 * scale
    if not np.any(lost):
        return q, r
    # Householder's columns for lost pivots are rounding noise, not orthogonal to the basis
    # (and later columns were orthogonalised against them): redo the block from fresh ones.
    q[:, lost] = rng.standard_normal((w.shape[0], int(lost.sum())))
    for _ in range(2):
        q -= basis.T @ (basis @ q)
        q = np.linalg.qr(q)[0]
    return q, q.T @ w


def _arpack(C, solve, sigma: float, k: int, rng) -> np.ndarray:
    """ARPACK's implicitly restarted Lanczos in shift-invert mode, on the same Cholesky factor."""
    n = C.shape[0]
    inverse = sla.LinearOperator((n, n), matvec=lambda x: solve(x.reshape(-1)), dtype=np.float64)
    # tol=0 (machine precision), as ARPACK's default: looser, it can miss a member of a cluster.
    _, y = sla.eigsh(C, k=k, sigma=sigma, which="LM", OPinv=inverse, tol=0,
                     v0=rng.standard_normal(n))
    return y
