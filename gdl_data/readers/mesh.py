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
coordinates ("non-finite-coordinates"), face indices in range ("index-out-of-range").
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
from gdl_data.readers.validate import check_indices, check_positions, never_raises, read_raw

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
    yield Mesh(source=source, sample_id=content_id(sample_bytes), pos=pos, faces=faces)


def _load_trimesh(data: bytes, ext: str, path: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    options = {"process": False}
    if ext == ".obj":
        # keep the file's vertex order even where texture seams would make trimesh split vertices
        options.update(maintain_order=True, skip_materials=True, group_material=False)
    resolver = trimesh.resolvers.FilePathResolver(path)   # finds a .gltf's external buffers
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


def _gltf_with_buffers(data: bytes, path: str, source: str) -> bytes:
    """A .gltf's JSON followed by the external buffer files it names: together they are the sample."""
    document = json.loads(data)
    parts = [data]
    for buffer in document.get("buffers", []):
        uri = buffer.get("uri", "")
        if not uri or uri.startswith("data:"):
            continue
        buffer_path = os.path.join(os.path.dirname(path), urllib.parse.unquote(uri))
        try:
            with open(buffer_path, "rb") as fh:
                parts.append(fh.read())
        except OSError:
            raise ReadError(source, f"the buffer file '{uri}' it names is missing", kind="missing-file") from None
        if len(parts[-1]) < buffer.get("byteLength", 0):
            raise ReadError(source, f"the buffer file '{uri}' holds {len(parts[-1])} bytes, "
                                    f"the file declares {buffer['byteLength']}", kind="truncated")
    return b"".join(parts)


register_reader("mesh", TRIMESH_EXTENSIONS + VTK_EXTENSIONS, read_mesh)
