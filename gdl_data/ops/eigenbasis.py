"""The `eigenbasis` op: the smallest eigenpairs of each domain's Laplacian.

Outputs (shared/DESIGN.md): `mass` (n,), `evals` (k,), `evecs` (n, k) — ascending, evecs
orthonormal w.r.t. mass, each column's largest-magnitude entry positive (ties: lowest index).
Same input, same parameters: byte-identical output.

  mesh      robust intrinsic Laplacian (Sharp & Crane 2020), generalized L φ = λ M φ, M the
            vertex areas; point clouds (faces (0, 3)) use its point-cloud variant.
  graph     D − A ("combinatorial", default) or D^-½ (D − A) D^-½ ("sym"); mass ones.
  molecule  the bond graph's Laplacian, as a graph; a single atom gives (0, [1]).
  sphere    basis "laplacian" (default): DeepSphere's HEALPix graph Laplacian (mass ones);
            basis "spherical_harmonics": the real Y_lm at the pixel centres, evals l(l+1),
            mass 4π/n per pixel (orthonormal up to the HEALPix quadrature error: ≈ 0.02 at
            nside 8, 0.005 at nside 16 for l ≤ 11).

Every connected component contributes one zero eigenvalue. When k ≥ n, all n pairs are
returned (with a warning). Laplacians: gdl_data/ops/laplacian.py; solver: eigensolver.py.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from gdl_data.errors import OpError, SpecError
from gdl_data.ops.eigensolver import SOLVERS, auto_solver, smallest_eigenpairs
from gdl_data.ops.healpix import (harmonic_polynomials, healpix_laplacian, pixel_centres,
                                  real_spherical_harmonics)
from gdl_data.ops.lobpcg import guard_size
from gdl_data.ops.laplacian import NORMALIZATIONS, graph_laplacian, mesh_laplacian
from gdl_data.ops.registry import register_op

BASES = ("laplacian", "spherical_harmonics")


@dataclass(frozen=True)
class EigenbasisParams:
    """`eigenbasis` parameters.

    k: eigenpairs per sample (default 64).
    normalization: graph Laplacian of graphs, molecules and the HEALPix graph: "combinatorial"
      (D − A, default) or "sym" (D^-½ (D − A) D^-½). Meshes always use the robust cotangent
      Laplacian with its mass matrix, the combinatorial form, so they accept only the default.
    basis: "laplacian" (default) or, on the sphere only, "spherical_harmonics".
    solver: "auto" (default: shift-invert block Lanczos on meshes, on HEALPix maps up to
      50,000 pixels and on graphs and molecules up to 5,000 nodes; AMG-preconditioned LOBPCG
      above those, where a Cholesky factor would not fit or could fill in), "block_lanczos"
      (gdl_data/ops/eigensolver.py), "arpack" (scipy's eigsh, shift-invert, on the same
      Cholesky factor) or "lobpcg" (no factor; memory ≈ 5 blocks of n × (k + max(4, k/4))
      doubles, 8 with what the allocator keeps: gdl_data/ops/lobpcg.py).
    tol: relative residual of every eigenpair (default 1e-6; eigenvalues are then exact to ≈1e-12).
    dense_below: samples with at most this many vertices are solved by dense LAPACK (default 1000).
    """

    k: int = 64
    normalization: str = "combinatorial"
    basis: str = "laplacian"
    solver: str = "auto"
    tol: float = 1e-6
    dense_below: int = 1000

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}; write e.g. k: 64")
        for name, allowed in (("normalization", NORMALIZATIONS), ("basis", BASES),
                              ("solver", SOLVERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got "
                                 f"{getattr(self, name)!r}; write e.g. {name}: {allowed[0]}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) \
                or not 0 < self.tol < 1:
            raise ValueError(f"tol must be a number in (0, 1), got {self.tol!r}; "
                             f"write e.g. tol: 1e-6")
        if isinstance(self.dense_below, bool) or not isinstance(self.dense_below, int) \
                or self.dense_below < 0:
            raise ValueError(f"dense_below must be an integer ≥ 0, got {self.dense_below!r}; "
                             f"write e.g. dense_below: 1000")

    def check_domain(self, domain: str) -> None:
        if domain == "mesh" and self.normalization != "combinatorial":
            raise SpecError("eigenbasis: meshes use the robust cotangent Laplacian with its mass "
                            "matrix; remove normalization (or write normalization: combinatorial)")
        if domain != "sphere" and self.basis != "laplacian":
            raise SpecError(f"eigenbasis: basis {self.basis} exists only on the sphere; for "
                            f"{domain} remove basis (or write basis: laplacian)")

    def solver_options(self) -> dict:
        return {"solver": self.solver, "tol": self.tol, "dense_below": self.dense_below}


EIGENBASIS = register_op("eigenbasis", EigenbasisParams, version="2",
                         outputs=("mass", "evals", "evecs"), doc=__doc__.split("\n\n")[0])


def mesh_eigenbasis(pos: np.ndarray, faces: np.ndarray, k: int = 64, **solver_options) -> dict:
    """Laplace–Beltrami eigenbasis of a triangle mesh or point cloud (robust Laplacian).

    pos: (n, 3); faces: (f, 3) int or (0, 3) for a point cloud; k: pairs (default 64);
    solver_options: `solver`, `tol`, `dense_below`, `seed` of smallest_eigenpairs.
    Returns {"mass" (n,), "evals" (k,), "evecs" (n, k)} in the units of pos (evals in 1/length²).
    """
    L, mass = mesh_laplacian(pos, faces)
    if solver_options.get("solver") == "auto":
        solver_options = {**solver_options, "solver": auto_solver(len(mass), "surface")}
    # Solve at unit scale (the shift and tolerances see O(1) numbers), then scale back exactly.
    area = mass.sum()
    evals, evecs = smallest_eigenpairs(L, mass / area, k, **solver_options)
    return {"mass": mass, "evals": evals / area, "evecs": evecs / np.sqrt(area)}


def graph_eigenbasis(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None = None,
                     k: int = 64, normalization: str = "combinatorial", **solver_options) -> dict:
    """Eigenbasis of a graph Laplacian (gdl_data.ops.laplacian.graph_laplacian); mass ones.

    num_nodes: n; edge_index: (2, e); edge_weight: (e,) or None (ones); k: pairs (default 64);
    normalization: "combinatorial" (default) or "sym"; solver_options as for mesh_eigenbasis.
    Returns {"mass" (n,), "evals" (k,), "evecs" (n, k)}.
    """
    evals, evecs = smallest_eigenpairs(
        *graph_laplacian(num_nodes, edge_index, edge_weight, normalization), k, **solver_options)
    return {"mass": np.ones(num_nodes), "evals": evals, "evecs": evecs}


def sphere_eigenbasis(nside: int, k: int = 64, basis: str = "laplacian",
                      normalization: str = "combinatorial", **solver_options) -> dict:
    """Eigenbasis of a HEALPix sphere: the DeepSphere graph Laplacian or real spherical harmonics.

    nside: HEALPix resolution; k: pairs (default 64); basis: "laplacian" (default) or
    "spherical_harmonics" (exact Y_lm at the pixel centres, RING order, evals l(l+1), mass 4π/n);
    normalization: of the graph Laplacian; solver_options as for mesh_eigenbasis.
    Returns {"mass" (n,), "evals" (k,), "evecs" (n, k)}.
    """
    n = 12 * nside * nside
    if basis == "spherical_harmonics":
        if k >= n:
            warnings.warn(f"k={k} eigenpairs asked of a problem of size {n}: returning all {n}",
                          stacklevel=2)
        values, degrees = real_spherical_harmonics(pixel_centres(nside), min(k, n))
        return {"mass": np.full(n, 4.0 * np.pi / n), "evals": (degrees * (degrees + 1.0)),
                "evecs": values}
    solver = solver_options.pop("solver", "auto")
    solver = auto_solver(n, "grid") if solver == "auto" else solver
    # The low eigenvectors of the HEALPix graph are close to the Y_lm: LOBPCG starts there.
    start = harmonic_polynomials(pixel_centres(nside), guard_size(k)) if solver == "lobpcg" \
        else None
    evals, evecs = smallest_eigenpairs(healpix_laplacian(nside, normalization), np.ones(n), k,
                                       solver=solver, start=start, **solver_options)
    return {"mass": np.ones(n), "evals": evals, "evecs": evecs}


def _compute(sample, fn, *args, **kwargs) -> dict:
    try:
        return fn(*args, **kwargs)
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        raise OpError(sample.get("source", "?"), f"eigenbasis: {exc}",
                      kind="eigenbasis-failed") from None


@EIGENBASIS.implement("mesh")
def _mesh(sample, p: EigenbasisParams) -> dict:
    return _compute(sample, mesh_eigenbasis, sample["pos"], sample["faces"], p.k,
                    **p.solver_options())


@EIGENBASIS.implement("graph")
def _graph(sample, p: EigenbasisParams) -> dict:
    return _compute(sample, graph_eigenbasis, int(sample["num_nodes"]), sample["edge_index"],
                    sample.get("edge_weight"), p.k, p.normalization, **p.solver_options())


@EIGENBASIS.implement("molecule")
def _molecule(sample, p: EigenbasisParams) -> dict:
    return _compute(sample, graph_eigenbasis, len(sample["pos"]), sample["bond_index"], None,
                    p.k, p.normalization, **p.solver_options())


@EIGENBASIS.implement("sphere")
def _sphere(sample, p: EigenbasisParams) -> dict:
    nside = int(sample["nside"])
    if len(sample["pos"]) != 12 * nside * nside:
        raise OpError(sample.get("source", "?"), f"eigenbasis: nside {nside} means "
                      f"{12 * nside * nside} pixels, this map has {len(sample['pos'])}",
                      kind="bad-healpix")
    return _compute(sample, sphere_eigenbasis, nside, p.k, p.basis, p.normalization,
                    **p.solver_options())
