"""Typed domain objects returned by the readers: one per sample, arrays in canonical names.

Arrays are numpy, in the file's own order and units (nothing is rescaled). Floats are float64
here; the pipeline stores them as float32 (shared/DESIGN.md). `record()` gives the canonical
column dict that operators and storage consume.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

DOMAINS = ("mesh", "molecule", "graph", "sphere")
# The columns that are a domain's *structure*: every op reads only these (and `domain`, `source`),
# so samples with equal structure have equal op outputs and can share them (pipelines/geometry.py).
# Everything else a reader gives (values, x, y, labels) is a signal on that structure.
STRUCTURE = {"sphere": ("nside", "pos"), "graph": ("num_nodes", "edge_index", "edge_weight", "node_ids"),
             "mesh": ("pos", "faces"), "molecule": ()}


def content_id(data: bytes) -> str:
    """Stable sample id: the first 32 hex digits of the SHA-256 of the sample's raw bytes."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass(eq=False)
class Sample:
    """What every domain object has: where it came from and its content id."""

    source: str
    sample_id: str
    domain: ClassVar[str] = ""
    # True when many samples are signals on one domain and should store its geometry once:
    # every HEALPix map; graphs and meshes of the signals layout (gdl_data/readers/signals.py)
    # set it on the instance. One file per structure gains nothing from sharing.
    shares_domain: ClassVar[bool] = False

    def arrays(self) -> dict[str, Any]:
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        """Canonical columns: `sample_id`, `source`, `domain` plus this domain's arrays."""
        return {"sample_id": self.sample_id, "source": self.source, "domain": self.domain,
                **{k: v for k, v in self.arrays().items() if v is not None}}


@dataclass(eq=False)
class Mesh(Sample):
    """A triangle mesh; `faces` has shape (0, 3) for a point cloud."""

    pos: np.ndarray = None          # (n, 3) float64
    faces: np.ndarray = None        # (f, 3) int64
    domain: ClassVar[str] = "mesh"

    def arrays(self):
        return {"pos": self.pos, "faces": self.faces}


@dataclass(eq=False)
class Molecule(Sample):
    """Atoms in 3D with covalent bonds; `props` holds numeric record properties (e.g. SDF tags)."""

    pos: np.ndarray = None          # (n, 3) float64, Ångström
    z: np.ndarray = None            # (n,) int64 atomic numbers
    bond_index: np.ndarray = None   # (2, b) int64, both directions
    props: dict[str, float] = field(default_factory=dict)
    domain: ClassVar[str] = "molecule"

    def arrays(self):
        return {"pos": self.pos, "z": self.z, "bond_index": self.bond_index,
                **{f"prop_{k}": np.asarray(v) for k, v in self.props.items()}}


@dataclass(eq=False)
class Graph(Sample):
    """A graph: `edge_index` both directions for undirected graphs, optional weights and features."""

    num_nodes: int = 0
    edge_index: np.ndarray = None   # (2, e) int64
    edge_weight: np.ndarray | None = None   # (e,) float64, positive
    x: np.ndarray | None = None     # (n, c) node features
    y: np.ndarray | None = None     # (n,) or (n, c) node labels
    node_ids: np.ndarray | None = None      # (n,) the source's own identifiers, as strings
    domain: ClassVar[str] = "graph"

    def arrays(self):
        return {"num_nodes": np.int64(self.num_nodes), "edge_index": self.edge_index,
                "edge_weight": self.edge_weight, "x": self.x, "y": self.y, "node_ids": self.node_ids}


@dataclass(eq=False)
class SphereMap(Sample):
    """A HEALPix map in RING order; `pos` are the pixel centres as unit vectors."""

    nside: int = 0
    values: np.ndarray = None       # (n, c) float64, n = 12 nside²
    pos: np.ndarray = None          # (n, 3) float64
    domain: ClassVar[str] = "sphere"
    shares_domain: ClassVar[bool] = True

    def arrays(self):
        return {"nside": np.int64(self.nside), "values": self.values, "pos": self.pos}
