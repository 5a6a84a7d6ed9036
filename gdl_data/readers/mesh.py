"""Mesh readers: PLY, OBJ, OFF, STL, GLB/glTF through trimesh; VTK, VTP, VTU through pyvista.

One file is one sample, `sample_id` the hash of its bytes (a .gltf together with the external
buffers it names; a .gz file by its decompressed bytes). Vertices and triangles are the file's
own, unscaled and in file order (trimesh with `process=False`; OBJ with `maintain_order`), with
two exceptions that the formats force:
- STL stores three separate corners per triangle, so identical corners are merged (exact
  equality), vertices numbered by first appearance;
- a VTK volume grid (.vtu, legacy unstructured/structured) is reduced to its outer surface.
A scene of several bodies (glTF nodes, OBJ objects) is one sample: the bodies are placed by
their scene transforms and concatenated in the order the file lists its meshes, face indices
offset. A file with
vertices but no faces is a point cloud: `faces` has shape (0, 3). Polygons are split into
triangles by the parsing library.

Checked before a Mesh is returned (else a ReadError with this kind): the declared header
counts against the file's length ("truncated"), at least one vertex ("empty"), finite
coordinates ("non-finite-coordinates") that float32 can hold ("out-of-range"), face indices in
range ("index-out-of-range"), some face of non-zero area ("zero-area"). External files (glTF
buffers and images, PLY textures) are read only from the file's own folder or below it
("external-reference"), and only when they are regular files.
"""
from __future__ import annotations

import io
import json
import os
import urllib.parse
from typing import Iterator

import numpy as np

from gdl_data.domains import Mesh, content_id
from gdl_data.errors import ReadError
from gdl_data.readers import extension, register_reader
from gdl_data.readers.mesh_headers import truncation_problem
from gdl_data.readers.mesh_vtk import load_vtk
from gdl_data.readers.validate import (check_indices, check_positions, never_raises, read_raw,
                                       read_regular_file)

TRIMESH_EXTENSIONS = (".ply", ".obj", ".off", ".stl", ".glb", ".gltf")
VTK_EXTENSIONS = (".vtk", ".vtk.gz", ".vtp", ".vtu")


@never_raises
def read_mesh(path: str, source: str) -> Iterator[Mesh | ReadError]:
    """Yield the one Mesh in `path`, or one ReadError saying what is wrong with the file."""
    ext = extension(path)
    data = read_raw(path, source)
    problem = truncation_problem(ext, data)
    if problem:
        raise ReadError(source, problem, kind="truncated")
    if ext in VTK_EXTENSIONS:
        pos, faces = load_vtk(data, ext, source)
        sample_bytes = data
    else:
        sample_bytes = _gltf_with_buffers(data, path, source) if ext == ".gltf" else data
        pos, faces = _load_trimesh(data, ext, path, source)
    pos = check_positions(pos, source, "vertex")
    faces = check_indices(np.asarray(faces).reshape(-1, 3), len(pos), source, "face", "vertices")
    check_surface_area(pos, faces, source)
    yield Mesh(source=source, sample_id=content_id(sample_bytes), pos=pos, faces=faces)


def check_surface_area(pos: np.ndarray, faces: np.ndarray, source: str) -> None:
    """Refuse a mesh whose faces all have zero area (relative to its size): it has no surface,
    so its mass, Laplacian and spectrum would be made up. Some degenerate faces are fine."""
    if len(faces) == 0:
        return
    corners = pos[faces]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1).sum()
    diagonal = float(np.linalg.norm(pos.max(axis=0) - pos.min(axis=0)))
    if not area > 1e-12 * diagonal ** 2 or diagonal == 0:
        raise ReadError(source, f"all {len(faces)} faces have zero area (every triangle is degenerate): "
                                f"there is no surface to compute on. Fix the faces, or remove them to "
                                f"store the vertices as a point cloud", kind="zero-area")


def _load_trimesh(data: bytes, ext: str, path: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    options = {"process": False}
    if ext == ".obj":
        # keep the file's vertex order even where texture seams would make trimesh split vertices
        options.update(maintain_order=True, skip_materials=True, group_material=False)
    resolver = ConfinedResolver(path, source)   # a .gltf's buffers, an .obj's .mtl: beside the file only
    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=ext[1:], resolver=resolver, **options)
    except IndexError as exc:   # trimesh's OBJ and OFF parsers index vertices with the face table
        raise ReadError(source, f"a face refers to a vertex that does not exist ({exc})",
                        kind="index-out-of-range") from None
    pos, faces = _flatten(loaded, source)
    if ext == ".stl":
        pos, faces = merge_identical_vertices(pos, faces)
    return pos, faces


def _flatten(loaded, source: str) -> tuple[np.ndarray, np.ndarray]:
    """One (pos, faces) from whatever trimesh returned: a mesh, a point cloud or a scene."""
    import trimesh

    if isinstance(loaded, trimesh.Scene):
        parts = []
        # in the order the file lists its meshes (the scene graph's own order is not stable),
        # each placed by every node that instances it
        for geometry_name, geometry in loaded.geometry.items():
            for node in loaded.graph.geometry_nodes.get(geometry_name, []):
                transform, _ = loaded.graph[node]
                part_pos, part_faces = _flatten(geometry, source)
                if not np.array_equal(transform, np.eye(4)):
                    part_pos = trimesh.transform_points(part_pos, transform)
                parts.append((part_pos, part_faces))
        return concatenate_parts(parts)
    if isinstance(loaded, trimesh.Trimesh):
        return np.asarray(loaded.vertices), np.asarray(loaded.faces)
    if isinstance(loaded, trimesh.PointCloud):
        return np.asarray(loaded.vertices), np.zeros((0, 3), dtype=np.int64)
    raise ReadError(source, f"holds a {type(loaded).__name__} (lines or curves), not a surface or points",
                    kind="unsupported-format")


def concatenate_parts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack several bodies into one mesh, shifting each body's face indices past earlier vertices."""
    if not parts:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    offsets = np.cumsum([0] + [len(pos) for pos, _ in parts[:-1]])
    pos = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 3) for p, _ in parts])
    faces = np.concatenate([np.asarray(f, dtype=np.int64).reshape(-1, 3) + off
                            for (_, f), off in zip(parts, offsets)])
    return pos, faces


def merge_identical_vertices(pos: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge bit-identical vertices; kept vertices are numbered in order of first appearance."""
    if len(pos) == 0:
        return pos, faces
    unique, first, inverse = np.unique(pos, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)                 # unique rows by first appearance in the file
    new_index = np.empty(len(order), dtype=np.int64)
    new_index[order] = np.arange(len(order))
    return unique[order], new_index[inverse.reshape(-1)][np.asarray(faces, dtype=np.int64)]


def confined_path(folder: str, uri: str, source: str) -> str:
    """The file an external reference (a glTF buffer or image, an OBJ's .mtl) names, which must
    lie in the referring file's own folder or below it, symbolic links resolved. An absolute
    path, `..` out of the folder, or a link leading out is refused: a mesh file must not make
    gdl read /etc/hostname or /dev/zero."""
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, urllib.parse.unquote(uri).strip()))
    if os.path.isabs(urllib.parse.unquote(uri).strip()) or os.path.commonpath([root, target]) != root:
        raise ReadError(source, f"it refers to '{uri}', outside its own folder; gdl reads only files "
                                f"beside the mesh file (or below it): copy it there and refer to it by "
                                f"a relative name", kind="external-reference")
    return target


class ConfinedResolver:
    """trimesh's resolver interface, reading only regular files inside one folder."""

    def __init__(self, path: str, source: str):
        self.folder, self.source = os.path.dirname(os.path.abspath(path)), source

    def get(self, name: str) -> bytes:
        return read_regular_file(confined_path(self.folder, name, self.source), self.source)

    __getitem__ = get

    def __contains__(self, name: str) -> bool:
        return False   # trimesh asks before optional files (textures): gdl needs none

    def namespaced(self, namespace: str) -> "ConfinedResolver":
        child = ConfinedResolver(self.folder, self.source)
        child.folder = confined_path(self.folder, namespace, self.source)   # a subfolder, still inside
        return child

    def keys(self):
        return iter(())


def _gltf_with_buffers(data: bytes, path: str, source: str) -> bytes:
    """A .gltf's JSON followed by the external buffer files it names: together they are the sample."""
    document = json.loads(data)
    parts = [data]
    resolver = ConfinedResolver(path, source)
    for buffer in document.get("buffers", []):
        uri = buffer.get("uri", "")
        if not uri or uri.startswith("data:"):
            continue
        try:
            parts.append(resolver.get(uri))
        except ReadError as err:
            if err.kind != "unreadable":
                raise
            raise ReadError(source, f"the buffer file '{uri}' it names is missing", kind="missing-file") from None
        if len(parts[-1]) < buffer.get("byteLength", 0):
            raise ReadError(source, f"the buffer file '{uri}' holds {len(parts[-1])} bytes, "
                                    f"the file declares {buffer['byteLength']}", kind="truncated")
    return b"".join(parts)


register_reader("mesh", TRIMESH_EXTENSIONS + VTK_EXTENSIONS, read_mesh)
