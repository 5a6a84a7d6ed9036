"""The `eigenbasis` op: the smallest eigenpairs of each domain's Laplacian.

Outputs (shared/DESIGN.md): `mass` (n,), `evals` (k,), `evecs` (n, k) — ascending, evecs
orthonormal w.r.t. mass, each column's largest-magnitude entry positive (ties: lowest index).
Same input, same parameters: byte-identical output.

  mesh      generalized L φ = λ M φ, M the vertex areas. laplacian "robust" (default): the
            robust intrinsic Laplacian (Sharp & Crane 2020); "cotan": the plain cotangent
            Laplacian with barycentric areas, DiffusionNet's mesh operators (with shift 1e-8
            its evals too: README, "DiffusionNet parity"). Point clouds (faces (0, 3)) use the
            robust point-cloud Laplacian either way (as DiffusionNet does), centred first
            with "robust", as given with "cotan".
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

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gdl_data.errors import OpError, SpecError
from gdl_data.lazy import lazy_module
from gdl_data.ops.eigensolver import (SOLVERS, auto_solver, dense_smallest_eigenpairs, smallest_eigenpairs,
                                      warn_all_pairs)
from gdl_data.ops.healpix import (harmonic_block, harmonic_polynomials, healpix_laplacian,
                                  pixel_centres, real_spherical_harmonics)
from gdl_data.ops.laplacian import (LAPLACIANS, NORMALIZATIONS, cotan_laplacian, dense_laplacians_unchecked,
                                    graph_laplacian, mesh_laplacian)
from gdl_data.ops.registry import register_op
from gdl_data.params import Choice, Integer, Number, check_params, check_value, param

sp = lazy_module("scipy.sparse")

BASES = ("laplacian", "spherical_harmonics")


@dataclass(frozen=True)
class EigenbasisParams:
    """`eigenbasis` parameters (declared below; README's table is generated from them).

    normalization applies to graphs, molecules and the HEALPix graph; meshes always use a
    cotangent Laplacian with its mass matrix (the combinatorial form), so they accept only the
    default. laplacian (meshes): "robust" (robust-laplacian, Sharp & Crane 2020) or "cotan"
    (gdl_data.ops.laplacian.cotan_laplacian: DiffusionNet's mesh L and mass); point clouds get
    the robust point-cloud Laplacian with either: centred on their mean first with "robust", on
    the coordinates as given with "cotan" (as DiffusionNet). shift (meshes): solve
    (L + shift·I) φ = λ M φ; DiffusionNet adds 1e-8 so that its shift-invert solve never factors
    a singular matrix. solver "block_lanczos" is gdl_data/ops/eigensolver.py, "lobpcg"
    gdl_data/ops/lobpcg.py (memory ≈ 5 blocks of n × m doubles with what the allocator keeps;
    m = k + max(4, k/4), on the sphere every harmonic up to the k-th pair's degree).
    """

    k: int = param(64, Integer(1), doc="eigenpairs per sample (all n when k ≥ n)")
    normalization: str = param("combinatorial", Choice(NORMALIZATIONS),
                               doc="graph Laplacian: D − A, or D^-½ (D − A) D^-½ (not meshes)")
    basis: str = param("laplacian", Choice(BASES),
                       doc="spherical harmonics: sphere only, evals l(l+1)")
    solver: str = param("auto", Choice(SOLVERS),
                        doc="auto: shift-invert block Lanczos on meshes, HEALPix maps ≤ 50k pixels and "
                            "graphs ≤ 5k nodes, AMG-preconditioned LOBPCG (no factor) above; or one of them, "
                            "or scipy's eigsh on the Cholesky factor")
    tol: float = param(1e-6, Number(0, 1), doc="relative residual of every eigenpair")
    dense_below: int = param(1000, Integer(0),
                             doc="samples with at most this many vertices use dense LAPACK")
    laplacian: str = param("robust", Choice(LAPLACIANS),
                           doc="meshes: robust-laplacian, or the cotan Laplacian DiffusionNet uses")
    shift: float = param(0.0, Number(0, 1, low_open=False), example=1.0e-8,
                         doc="meshes: solve with L + shift·I (DiffusionNet: 1e-8)")

    def __post_init__(self):
        check_params(self)

    def check_domain(self, domain: str) -> None:
        if domain == "mesh" and self.normalization != "combinatorial":
            raise SpecError("eigenbasis: meshes use the robust cotangent Laplacian (or the plain "
                            "one: laplacian: cotan) with its mass matrix; remove normalization "
                            "(or write normalization: combinatorial)")
        if domain != "mesh" and (self.laplacian != "robust" or self.shift != 0):
            raise SpecError(f"eigenbasis: laplacian and shift choose between mesh Laplacians; "
                            f"for {domain} remove them")
        if domain != "sphere" and self.basis != "laplacian":
            raise SpecError(f"eigenbasis: basis {self.basis} exists only on the sphere; for "
                            f"{domain} remove basis (or write basis: laplacian)")

    def solver_options(self) -> dict:
        return {"solver": self.solver, "tol": self.tol, "dense_below": self.dense_below}


# 3: graphs of at most dense_below nodes are built and solved densely (last-bit changes possible
# for non-integer weights; unit-weight graphs and molecules are unchanged); large graphs and
# HEALPix maps by LOBPCG (solver auto).
# 4: LOBPCG with soft locking, a float32 multigrid V-cycle, a standard Rayleigh–Ritz problem and,
# on the sphere, the whole degree cluster of the k-th pair as its block (no other guard):
# eigenvalues and eigenspaces of its results change at the level of its tolerance.
EIGENBASIS = register_op("eigenbasis", EigenbasisParams, version="4",
                         outputs=("mass", "evals", "evecs"), doc=__doc__.split("\n\n")[0])


def mesh_eigenbasis(pos: np.ndarray, faces: np.ndarray, k: int = 64, laplacian: str = "robust",
                    shift: float = 0.0, **solver_options) -> dict:
    """Laplace–Beltrami eigenbasis of a triangle mesh or point cloud.

    pos: (n, 3); faces: (f, 3) int or (0, 3) for a point cloud; k: pairs (default 64);
    laplacian: "robust" (default, mesh_laplacian) or "cotan" (cotan_laplacian; point clouds
    get the robust point-cloud Laplacian of the coordinates as given, uncentred);
    shift: added to L's diagonal (default 0; DiffusionNet's 1e-8);
    solver_options: `solver`, `tol`, `dense_below`, `seed` of smallest_eigenpairs.
    Returns {"mass" (n,), "evals" (k,), "evecs" (n, k)} in the units of pos (evals in 1/length²).
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if laplacian == "cotan" and len(faces):
        L, mass = cotan_laplacian(pos, faces)
    else:   # DiffusionNet's point clouds: robust-laplacian on the coordinates as given
        L, mass = mesh_laplacian(pos, faces, centre=laplacian == "robust")
    if shift:
        L = L + shift * sp.identity(L.shape[0], format="csr")
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
    dense = num_nodes <= solver_options.get("dense_below", 1000)
    L, mass = graph_laplacian(num_nodes, edge_index, edge_weight, normalization, dense=dense)
    evals, evecs = smallest_eigenpairs(L, mass, k, **solver_options)
    return {"mass": mass, "evals": evals, "evecs": evecs}


def graph_eigenbases(graphs: Sequence[tuple[int, np.ndarray, np.ndarray | None]], k: int = 64,
                     normalization: str = "combinatorial", **solver_options) -> list[dict]:
    """graph_eigenbasis of each (num_nodes, edge_index, edge_weight) in `graphs`, byte for byte,
    with the graphs of at most `dense_below` nodes solved together (dense_smallest_eigenpairs)."""
    check_value("normalization", normalization, Choice(NORMALIZATIONS))
    dense_below = solver_options.get("dense_below", 1000)
    small = [i for i, graph in enumerate(graphs) if graph[0] <= dense_below]
    by_size: dict[int, list[int]] = {}
    for i in small:
        by_size.setdefault(graphs[i][0], []).append(i)
    small = [i for members in by_size.values() for i in members]
    laplacians = [L for n, members in by_size.items() for L in dense_laplacians_unchecked(
        n, [graphs[i][1] for i in members], [graphs[i][2] for i in members], normalization)]
    pairs = dense_smallest_eigenpairs(laplacians, k)
    out: list[dict] = [None] * len(graphs)
    for i, (evals, evecs) in zip(small, pairs):
        out[i] = {"mass": np.ones(graphs[i][0]), "evals": evals, "evecs": evecs}
    for i in sorted(set(range(len(graphs))) - set(small)):
        out[i] = graph_eigenbasis(*graphs[i], k=k, normalization=normalization, **solver_options)
    return out


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
            warn_all_pairs(k, n)
        values, degrees = real_spherical_harmonics(pixel_centres(nside), min(k, n))
        return {"mass": np.full(n, 4.0 * np.pi / n), "evals": (degrees * (degrees + 1.0)),
                "evecs": values}
    solver = solver_options.pop("solver", "auto")
    solver = auto_solver(n, "grid") if solver == "auto" else solver
    # The low eigenvectors of the HEALPix graph are close to the Y_lm: LOBPCG starts there, with
    # every harmonic of the k-th pair's degree (its cluster) as the block: no other guard.
    evals, evecs = smallest_eigenpairs(
        healpix_laplacian(nside, normalization), np.ones(n), k, solver=solver,
        start=lambda width: harmonic_polynomials(pixel_centres(nside), width),
        block=harmonic_block(k, n), **solver_options)
    return {"mass": np.ones(n), "evals": evals, "evecs": evecs}


def _compute(sample, fn, *args, **kwargs) -> dict:
    try:
        return fn(*args, **kwargs)
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        raise OpError(sample.get("source", "?"), f"eigenbasis: {exc}",
                      kind="eigenbasis-failed") from None


@EIGENBASIS.implement("mesh")
def _mesh(sample, p: EigenbasisParams) -> dict:
    return _compute(sample, mesh_eigenbasis, sample["pos"], sample["faces"], p.k, p.laplacian,
                    p.shift, **p.solver_options())


@EIGENBASIS.implement("graph")
def _graph(sample, p: EigenbasisParams) -> dict:
    return _compute(sample, graph_eigenbasis, int(sample["num_nodes"]), sample["edge_index"],
                    sample.get("edge_weight"), p.k, p.normalization, **p.solver_options())


@EIGENBASIS.implement("molecule")
def _molecule(sample, p: EigenbasisParams) -> dict:
    return _compute(sample, graph_eigenbasis, len(sample["pos"]), sample["bond_index"], None,
                    p.k, p.normalization, **p.solver_options())


@EIGENBASIS.implement_batch("graph")
def _graphs(samples, p: EigenbasisParams) -> list[dict]:
    return graph_eigenbases([(int(s["num_nodes"]), s["edge_index"], s.get("edge_weight")) for s in samples],
                            p.k, p.normalization, **p.solver_options())


@EIGENBASIS.implement_batch("molecule")
def _molecules(samples, p: EigenbasisParams) -> list[dict]:
    return graph_eigenbases([(len(s["pos"]), s["bond_index"], None) for s in samples],
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
