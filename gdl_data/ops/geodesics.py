"""The `geodesics` op: distance from a few source points to every point of a sample.

Outputs (shared/DESIGN.md): `geo_sources` (s,) int64 and `geo_dist` (s, n) float32, row i the
distance from geo_sources[i]; `inf` where a point cannot be reached (another component, a vertex
in no triangle).

  mesh      heat method (Crane, Weischedel & Wardetzky 2013), potpourri3d's
            MeshHeatMethodDistanceSolver on the robust intrinsic Laplacian: factored once per
            mesh, then two solves per source (default). method "exact": exact polyhedral
            geodesics (MMP, Surazhsky et al. 2005; pygeodesic), for meshes up to
            `max_vertices_for_exact` vertices. Point clouds (faces (0, 3)): potpourri3d's
            PointCloudHeatSolver (heat method on the point-cloud Laplacian, ≥ 31 points).
  graph     weighted shortest paths along edge directions (Dijkstra, scipy.sparse.csgraph);
            lengths = edge_weight, or 1 per edge.
  molecule  number of bonds on the shortest bond path (hop count).
  sphere    great-circle distance arccos(x·y) between pixel centres.

sources: an int s gives s farthest-point sources (gdl_data/ops/sampling.py), measured in the
same distance and started at the first point that can be a source (vertex 0 unless it lies in no
triangle); a list gives those point ids; "all" every point (refused above `max_points_for_all`).
Meshes are centred and scaled to unit size for the solvers; distances come back in file units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from gdl_data.errors import OpError, SpecError
from gdl_data.ops.distances import graph_distance_from, mesh_distance_from, sphere_distance_from
from gdl_data.ops.registry import register_op
from gdl_data.params import Choice, Integer, IntList, Number, check_params, param
from gdl_data.ops.sampling import farthest_point_order

METHODS = {"mesh": ("heat", "exact"), "graph": ("dijkstra",), "molecule": ("hops",),
           "sphere": ("great_circle",)}
ALL_METHODS = tuple(sorted({m for ms in METHODS.values() for m in ms}))


@dataclass(frozen=True)
class GeodesicsParams:
    """`geodesics` parameters. method "auto": heat on meshes, dijkstra on graphs, hops on
    molecules, great_circle on the sphere; meshes also take "exact" (pygeodesic). heat_time is
    potpourri3d's t_coef (the paper's choice, 1.0). Exact geodesics take ≈0.3 s per source at 10k
    vertices, growing faster than n; "all" at 5000 points is 100 MB of float32 rows."""

    sources: int | str | list = param(8, Integer(1), Choice(("all",)), IntList(0, (0, 10, 42)),
                                      doc="farthest-point sources, a list of point ids, or all")
    method: str = param("auto", Choice(("auto",) + ALL_METHODS), doc="solver (auto: by domain)",
                        example="heat")
    heat_time: float = param(1.0, Number(0), doc="heat-method time step, in mean edge length²")
    max_vertices_for_exact: int = param(20000, Integer(1), doc="largest mesh for method exact")
    max_points_for_all: int = param(5000, Integer(1), doc="largest sample for sources: all")

    def __post_init__(self):
        check_params(self)
        if isinstance(self.sources, tuple):
            object.__setattr__(self, "sources", list(self.sources))

    def check_domain(self, domain: str) -> None:
        if self.method != "auto" and self.method not in METHODS[domain]:
            raise SpecError(f"geodesics: method {self.method} does not apply to {domain}; "
                            f"write method: auto or one of: {', '.join(METHODS[domain])}")

    def method_for(self, domain: str) -> str:
        return METHODS[domain][0] if self.method == "auto" else self.method


GEODESICS = register_op("geodesics", GeodesicsParams, version="1",
                        outputs=("geo_sources", "geo_dist"), doc=__doc__.split("\n\n")[0])


def geodesic_rows(distance_from: Callable[[int], np.ndarray], n: int, sources,
                  candidates: np.ndarray | None = None,
                  max_points_for_all: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """(geo_sources (s,) int64, geo_dist (s, n) float32) for a sources spec (int, list, "all").

    distance_from: point id -> (n,) distances (inf: unreachable); candidates: (n,) bool, the
    points farthest-point sampling may pick (default all). Raises ValueError for ids out of
    range and for "all" above max_points_for_all.
    """
    if isinstance(sources, str):            # "all"
        if n > max_points_for_all:
            raise ValueError(f"sources: all asks for {n} × {n} distances; the limit is "
                             f"max_points_for_all={max_points_for_all}. Write sources: <int> for "
                             f"farthest-point sources, or raise max_points_for_all")
        ids = list(range(n))
    elif isinstance(sources, int):
        pool = np.ones(n, bool) if candidates is None else np.asarray(candidates, bool)
        if not pool.any():
            raise ValueError("no point can be a geodesic source")
        order = farthest_point_order(distance_from, min(sources, int(pool.sum())),
                                     start=int(np.argmax(pool)), candidates=pool)
        ids, rows = zip(*order)
        return np.asarray(ids, np.int64), np.asarray(rows, np.float32)
    else:
        ids = list(sources)
        if max(ids) >= n:
            raise ValueError(f"source id {max(ids)} is out of range: the sample has {n} points")
    rows = np.empty((len(ids), n), np.float32)
    for row, point in enumerate(ids):
        rows[row] = distance_from(point)
    return np.asarray(ids, np.int64), rows


def mesh_geodesics(pos: np.ndarray, faces: np.ndarray, sources=8, method: str = "heat",
                   heat_time: float = 1.0, max_vertices_for_exact: int = 20000,
                   max_points_for_all: int = 5000) -> dict:
    """Geodesic distances on a mesh or point cloud from `sources` (int: farthest points from the
    first vertex in a triangle; list of ids; "all"). Other arguments as in mesh_distance_from
    and geodesic_rows. Returns {"geo_sources" (s,) int64, "geo_dist" (s, n) float32}."""
    distance_from, candidates = mesh_distance_from(pos, faces, method, heat_time,
                                                   max_vertices_for_exact)
    return _as_columns(geodesic_rows(distance_from, len(pos), sources, candidates,
                                     max_points_for_all))


def graph_geodesics(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None = None,
                    sources=8, max_points_for_all: int = 5000) -> dict:
    """Shortest-path distances (weights as lengths; without weights: hop counts) from `sources`
    (int: farthest points from node 0; list of ids; "all").
    Returns {"geo_sources" (s,) int64, "geo_dist" (s, n) float32}."""
    distance_from = graph_distance_from(num_nodes, edge_index, edge_weight)
    return _as_columns(geodesic_rows(distance_from, num_nodes, sources,
                                     max_points_for_all=max_points_for_all))


def sphere_geodesics(pos: np.ndarray, sources=8, max_points_for_all: int = 5000) -> dict:
    """Great-circle distances between unit vectors from `sources` (int: farthest points from
    point 0; list; "all"). Returns {"geo_sources" (s,) int64, "geo_dist" (s, n) float32}."""
    return _as_columns(geodesic_rows(sphere_distance_from(pos), len(pos), sources,
                                     max_points_for_all=max_points_for_all))


def _as_columns(rows: tuple[np.ndarray, np.ndarray]) -> dict:
    return {"geo_sources": rows[0], "geo_dist": rows[1]}


def _compute(sample, fn, *args, **kwargs) -> dict:
    try:
        return fn(*args, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise OpError(sample.get("source", "?"), f"geodesics: {exc}",
                      kind="geodesics-failed") from None


@GEODESICS.implement("mesh")
def _mesh(sample, p: GeodesicsParams) -> dict:
    return _compute(sample, mesh_geodesics, sample["pos"], sample["faces"], p.sources,
                    p.method_for("mesh"), p.heat_time, p.max_vertices_for_exact,
                    p.max_points_for_all)


@GEODESICS.implement("graph")
def _graph(sample, p: GeodesicsParams) -> dict:
    return _compute(sample, graph_geodesics, int(sample["num_nodes"]), sample["edge_index"],
                    sample.get("edge_weight"), p.sources, p.max_points_for_all)


@GEODESICS.implement("molecule")
def _molecule(sample, p: GeodesicsParams) -> dict:
    return _compute(sample, graph_geodesics, len(sample["pos"]), sample["bond_index"], None,
                    p.sources, p.max_points_for_all)


@GEODESICS.implement("sphere")
def _sphere(sample, p: GeodesicsParams) -> dict:
    return _compute(sample, sphere_geodesics, sample["pos"], p.sources, p.max_points_for_all)
