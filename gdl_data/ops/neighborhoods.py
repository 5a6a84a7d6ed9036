"""The `neighborhoods` op: a neighbourhood graph per sample, with edge lengths, and where the
domain has tangent frames (meshes, spheres) the connection (`transport`) and log-map
coordinates (`logmap`) along every edge.

Outputs (shared/DESIGN.md): `edge_index` (2, e) int64, both directions, [0] = source,
[1] = target, sorted by (source, target); `edge_dist` (e,); on meshes and spheres also
`transport` (e,) (sign convention: `TRANSPORT_CONVENTION`, gdl_data/ops/transport.py) and
`logmap` (e, 2), the target's coordinates in the source's frame (e1, e2).

Modes, exactly one per spec, `{}` giving the domain's default (first in each list):
  mesh      rings: k (k-ring, default 1) | knn: k | radius: r | geodesic_radius: r
  molecule  bonds: true (default) | radius: r (Å) | knn: k
  graph     hops: k (default 1: the graph's own edges, unchanged; edge_dist = hop count)
  sphere    healpix: true (8 neighbours, default) | disc: r (great-circle radius, radians)
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from gdl_data.errors import OpError, SpecError
from gdl_data.ops.frames import frames_for
from gdl_data.ops.geodesics import mesh_distance_from
from gdl_data.ops.neighbor_graphs import (canonical_edges, edges_by_source, geodesic_balls,
                                          geodesic_edge_lengths, graph_hops, healpix_edge_index,
                                          knn_edge_index, mesh_edge_index, radius_edge_index,
                                          radius_edge_indices, sphere_disc_edge_index)
from gdl_data.ops.registry import register_op
from gdl_data.params import (Choice, Fixed, Flag, Integer, Number, check_params, declared, param,
                             yaml_text)
from gdl_data.ops.transport import VectorHeatLogMap, connection_angles, projected_logmap

TRANSPORT_CONVENTION = ("z_target = exp(i*transport) * z_source for a tangent vector with complex "
                        "coordinate z = a + ib in frame (e1, e2); transport = angle of the source "
                        "e1, carried by the minimal rotation of source normal onto target normal, "
                        "measured in the target frame from e1 towards e2; antisymmetric")

EDGE_CHUNK = 1 << 18     # edges per chunk on the sphere: temporaries of ≈ 100 MB (≈ 400 B an edge)

MODES = {"mesh": ("rings", "knn", "radius", "geodesic_radius"),
         "molecule": ("bonds", "radius", "knn"),
         "graph": ("hops",),
         "sphere": ("healpix", "disc")}
_INT_MODES = ("rings", "knn", "hops")


def _example(mode: str) -> str:
    return yaml_text(declared(NeighborhoodsParams)[mode].example)


@dataclass(frozen=True)
class NeighborhoodsParams:
    """`neighborhoods` parameters: one mode (module docstring) or none for the domain's default.

    distance: "euclidean" (default: straight line, the chord on the sphere) or "geodesic"
      (meshes: heat method, gdl_data/ops/geodesics.py, inf between components; sphere: great
      circle; not for molecules). Graphs always store the hop count.
    logmap: "projection" (default: the edge projected onto the source's tangent plane and
      rescaled to the geodesic length where known — exact on the sphere and on flat regions)
      or "vector_heat" (meshes with faces: the vector heat method's log map, Sharp et al. 2019,
      via potpourri3d; one solve per source vertex; the projection where a target cannot be
      reached, e.g. a kNN edge to another component).
    convention: the sign convention of `transport`, fixed; recorded for the manifest.
    """

    rings: int | None = param(None, Integer(1), doc="mesh: the k-ring (default mode: 1)", example=1)
    knn: int | None = param(None, Integer(1), doc="mesh, molecule: k nearest neighbours", example=16)
    radius: float | None = param(None, Number(0), doc="mesh, molecule: Euclidean ball (Å for molecules)",
                                 example=0.1)
    geodesic_radius: float | None = param(None, Number(0), doc="mesh: geodesic ball (heat method)",
                                          example=0.1)
    disc: float | None = param(None, Number(0), doc="sphere: great-circle radius in radians", example=0.05)
    hops: int | None = param(None, Integer(1), doc="graph: k-hop graph (default mode: 1, its edges)",
                             example=2)
    bonds: bool | None = param(None, Flag(), doc="molecule: the bond graph (default mode)", example=True)
    healpix: bool | None = param(None, Flag(), doc="sphere: the 8 HEALPix neighbours (default mode)",
                                 example=True)
    distance: str = param("euclidean", Choice(("euclidean", "geodesic")),
                          doc="edge_dist: straight line, or geodesic (meshes, sphere)")
    logmap: str = param("projection", Choice(("projection", "vector_heat")),
                        doc="log map: tangent projection, or the vector heat method (meshes)")
    convention: str = param(TRANSPORT_CONVENTION, Fixed(TRANSPORT_CONVENTION),
                            doc="the sign convention of transport, recorded")

    def __post_init__(self):
        check_params(self)
        chosen = [name for name in _ALL_MODES if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise ValueError(f"give exactly one neighbourhood mode, got {', '.join(chosen)}; "
                             f"write e.g. neighborhoods: {{{chosen[0]}: {_example(chosen[0])}}}")

    def mode(self, domain: str) -> tuple[str, Any]:
        """The chosen (mode, value), or the domain's default."""
        for name in _ALL_MODES:
            if getattr(self, name) is not None:
                return name, getattr(self, name)
        first = MODES[domain][0]
        return first, 1 if first in _INT_MODES else True

    def check_domain(self, domain: str) -> None:
        name, _ = self.mode(domain)
        if name not in MODES[domain]:
            options = " | ".join(f"{{{m}: {_example(m)}}}" for m in MODES[domain])
            raise SpecError(f"op 'neighborhoods': mode '{name}' does not apply to {domain} samples; "
                            f"write one of {options}, or {{}} for the default")
        if domain == "molecule" and self.distance == "geodesic":
            raise SpecError("op 'neighborhoods': molecules have no surface to measure geodesics on; "
                            "write distance: euclidean (or leave it out)")
        if self.logmap == "vector_heat" and domain != "mesh":
            raise SpecError(f"op 'neighborhoods': logmap: vector_heat needs a triangle mesh; on "
                            f"{domain} samples write logmap: projection (or leave it out)")


_ALL_MODES = tuple(f.name for f in fields(NeighborhoodsParams)
                   if f.name not in ("distance", "logmap", "convention"))

NEIGHBORHOODS = register_op(
    "neighborhoods", NeighborhoodsParams, version="1",
    outputs=("edge_index", "edge_dist", "transport", "logmap"),
    depends_on=("frames",),
    doc="neighbourhood graph with edge lengths; connection angles and log maps where frames exist")


@NEIGHBORHOODS.implement("mesh")
def _mesh(sample, p: NeighborhoodsParams) -> dict[str, np.ndarray]:
    pos = np.asarray(sample["pos"], dtype=np.float64)
    faces = np.asarray(sample["faces"], dtype=np.int64).reshape(-1, 3)
    mode, value = p.mode("mesh")
    if not len(faces):
        _refuse_point_cloud_needs(sample, p, mode)
    try:
        return _mesh_neighborhoods(pos, faces, frames_for(sample), p, mode, value)
    except (ValueError, RuntimeError) as exc:      # potpourri3d's solvers on broken meshes
        raise OpError(sample.get("source", "?"), f"neighborhoods: {exc}",
                      kind="neighborhoods-failed") from None


def _mesh_neighborhoods(pos, faces, frames, p: NeighborhoodsParams, mode, value) -> dict:
    distance_from = None
    if mode == "geodesic_radius" or (p.distance == "geodesic" and (mode, value) != ("rings", 1)):
        distance_from, _ = mesh_distance_from(pos, faces)            # the heat method
    geodesic = None
    if mode == "geodesic_radius":
        edge_index, geodesic = geodesic_balls(distance_from, len(pos), value)
    elif mode == "rings":
        edge_index, _ = graph_hops(mesh_edge_index(faces, len(pos)), len(pos), value)
    elif mode == "knn":
        edge_index = knn_edge_index(pos, value)
    else:
        edge_index = radius_edge_index(pos, value)
    euclidean = _lengths(pos, edge_index)
    if p.distance == "geodesic" and geodesic is None:
        # A mesh edge is a straight segment on the surface: its geodesic length is exact.
        geodesic = euclidean if distance_from is None else \
            geodesic_edge_lengths(distance_from, len(pos), edge_index)
    # rescaled to the geodesic length, or the straight one between components (geodesic inf)
    lengths = euclidean if geodesic is None else np.where(np.isfinite(geodesic), geodesic, euclidean)
    logmap = projected_logmap(pos, frames, edge_index, lengths)
    if p.logmap == "vector_heat":   # where defined (the target reachable), else the projection
        vector_heat = _vector_heat_logmap(pos, faces, frames, edge_index)
        logmap = np.where(np.isnan(vector_heat), logmap, vector_heat)
    return {"edge_index": edge_index,
            "edge_dist": geodesic if p.distance == "geodesic" else euclidean,
            "transport": connection_angles(pos, frames, edge_index), "logmap": logmap}


def _refuse_point_cloud_needs(sample, p: NeighborhoodsParams, mode: str) -> None:
    defaulted = all(getattr(p, name) is None for name in _ALL_MODES)
    needs = ([f"{mode}{' (the default)' if defaulted else ''}"]
             if mode in ("rings", "geodesic_radius") else [])
    needs += ["distance: geodesic"] * (p.distance == "geodesic")
    needs += ["logmap: vector_heat"] * (p.logmap == "vector_heat")
    if needs:
        raise OpError(sample.get("source", "?"),
                      f"this mesh is a point cloud (no faces), and {' and '.join(needs)} "
                      f"{'needs' if len(needs) == 1 else 'need'} "
                      f"triangles; write neighborhoods: {{knn: 16}} or {{radius: r}}, with the "
                      f"default distance (euclidean) and logmap (projection)", kind="no-faces")


@NEIGHBORHOODS.implement("sphere")
def _sphere(sample, p: NeighborhoodsParams) -> dict[str, np.ndarray]:
    pos = np.asarray(sample["pos"], dtype=np.float64)
    mode, value = p.mode("sphere")
    if mode == "healpix":
        edge_index = healpix_neighbours_of(sample)
    else:
        edge_index = sphere_disc_edge_index(pos, value)
    unit = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    frames = frames_for(sample)
    out = {"edge_index": edge_index, "edge_dist": np.empty(edge_index.shape[1]),
           "transport": np.empty(edge_index.shape[1]),
           "logmap": np.empty((edge_index.shape[1], 2))}
    # In chunks of edges: nside 1024 has 10⁸ edges, whose (e, 3, 3) frame gathers would be 7 GB.
    for lo in range(0, edge_index.shape[1], EDGE_CHUNK):
        rows = slice(lo, lo + EDGE_CHUNK)
        chunk = edge_index[:, rows]
        a, b = unit[chunk[0]], unit[chunk[1]]
        # atan2 of (|a×b|, a·b): accurate for tiny angles, where arccos(a·b) loses half its digits.
        great_circle = np.arctan2(np.linalg.norm(np.cross(a, b), axis=1),
                                  np.einsum("ij,ij->i", a, b))
        out["edge_dist"][rows] = (great_circle if p.distance == "geodesic"
                                  else np.linalg.norm(b - a, axis=1))
        out["transport"][rows] = connection_angles(unit, frames, chunk)
        out["logmap"][rows] = projected_logmap(unit, frames, chunk, great_circle)
    return out


@NEIGHBORHOODS.implement("molecule")
def _molecule(sample, p: NeighborhoodsParams) -> dict[str, np.ndarray]:
    pos = np.asarray(sample["pos"], dtype=np.float64)
    mode, value = p.mode("molecule")
    if mode == "bonds":
        bonds = np.asarray(sample["bond_index"], dtype=np.int64).reshape(2, -1)
        edge_index = canonical_edges(np.concatenate(bonds[::-1]), np.concatenate(bonds), len(pos))
    elif mode == "radius":
        edge_index = radius_edge_index(pos, value)
    else:
        edge_index = knn_edge_index(pos, value)
    return {"edge_index": edge_index, "edge_dist": _lengths(pos, edge_index)}


@NEIGHBORHOODS.implement_batch("molecule")
def _molecules(samples, p: NeighborhoodsParams) -> list[dict[str, np.ndarray]]:
    """`radius` mode for a shard's molecules together (radius_edge_indices); other modes one by one."""
    mode, value = p.mode("molecule")
    if mode != "radius":
        return [_molecule(sample, p) for sample in samples]
    positions = [np.asarray(sample["pos"], dtype=np.float64) for sample in samples]
    edges = radius_edge_indices(positions, value)
    # Every edge length in one pass over all molecules' atoms (row by row, the same values)
    first_atom = np.cumsum([0] + [len(pos) for pos in positions[:-1]])
    lengths = _lengths(np.concatenate(positions), np.concatenate(
        [edge_index + offset for edge_index, offset in zip(edges, first_atom)], axis=1))
    bounds = np.cumsum([0] + [edge_index.shape[1] for edge_index in edges])
    return [{"edge_index": edge_index, "edge_dist": lengths[lo:hi]}
            for edge_index, lo, hi in zip(edges, bounds[:-1], bounds[1:])]


@NEIGHBORHOODS.implement("graph")
def _graph(sample, p: NeighborhoodsParams) -> dict[str, np.ndarray]:
    _, hops = p.mode("graph")
    own = np.asarray(sample["edge_index"], dtype=np.int64).reshape(2, -1)
    if hops == 1:
        # The graph's own edges, in the reader's order, so per-edge columns (edge_weight) still
        # line up with edge_index.
        return {"edge_index": own, "edge_dist": np.ones(own.shape[1])}
    edge_index, hop_count = graph_hops(own, int(sample["num_nodes"]), hops)
    return {"edge_index": edge_index, "edge_dist": hop_count}


def healpix_neighbours_of(sample) -> np.ndarray:
    """The HEALPix 8-neighbour edge_index of a sphere sample, after checking its pixel count."""
    nside, n = int(sample["nside"]), len(sample["pos"])
    if n != 12 * nside * nside:
        raise OpError(sample.get("source", "?"), f"a HEALPix map of nside {nside} has "
                      f"{12 * nside * nside} pixels, this one has {n}", kind="bad-healpix")
    return healpix_edge_index(nside)


def _lengths(pos: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
    return np.linalg.norm(pos[edge_index[1]] - pos[edge_index[0]], axis=1)


def _vector_heat_logmap(pos, faces, frames, edge_index) -> np.ndarray:
    log_maps = VectorHeatLogMap(pos, faces, frames)
    logmap = np.full((edge_index.shape[1], 2), np.nan)
    for source, rows in edges_by_source(edge_index, len(pos)):
        logmap[rows] = log_maps(source)[edge_index[1, rows]]
    return logmap
