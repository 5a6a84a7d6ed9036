"""Mesh readers on real meshes (pyvista's bundled examples) and on broken copies of them.

References: pyvista/VTK's own PLY parser for airplane.ply (the reader under test uses trimesh),
the original vertex and face arrays for every format converted from it, and the hexahedral
beam's boundary counted by hand.
"""
from __future__ import annotations

import gzip
import os
import shutil

import numpy as np
import pytest
import pyvista as pv
import pyvista.examples
import trimesh

from gdl_data.domains import Mesh
from reader_checks import read_error, read_samples

EXAMPLES = os.path.dirname(pyvista.examples.__file__)
AIRPLANE = os.path.join(EXAMPLES, "airplane.ply")   # ASCII PLY, 1335 vertices, 2452 triangles
GLOBE = os.path.join(EXAMPLES, "globe.vtk")         # binary legacy VTK PolyData
HEXBEAM = os.path.join(EXAMPLES, "hexbeam.vtk")     # legacy VTK unstructured grid of hexahedra


def one_mesh(path) -> Mesh:
    (mesh,) = read_samples(path, "mesh")
    assert mesh.pos.dtype == np.float64 and mesh.faces.dtype == np.int64
    return mesh


@pytest.fixture(scope="module")
def airplane():
    """The airplane as VTK parses it: (points, triangles), independent of trimesh."""
    reference = pv.read(AIRPLANE)
    return np.asarray(reference.points, dtype=np.float64), reference.faces.reshape(-1, 4)[:, 1:]


@pytest.fixture(scope="module")
def airplane_trimesh():
    return trimesh.load(AIRPLANE, process=False)


def test_real_ply_matches_vtk_parser(airplane):
    mesh = one_mesh(AIRPLANE)
    np.testing.assert_array_equal(mesh.pos, airplane[0])
    np.testing.assert_array_equal(mesh.faces, airplane[1])


@pytest.mark.parametrize("ext", ["ply", "off", "obj", "glb", "gltf"])
def test_converted_formats_keep_vertices_and_faces_in_file_order(tmp_path, airplane, airplane_trimesh, ext):
    path = tmp_path / f"airplane.{ext}"
    airplane_trimesh.export(path)
    mesh = one_mesh(path)
    np.testing.assert_allclose(mesh.pos, airplane[0], rtol=1e-7)   # OBJ/OFF print ~10 digits
    np.testing.assert_array_equal(mesh.faces, airplane[1])


def test_stl_corners_are_merged_into_the_same_triangles(tmp_path, airplane, airplane_trimesh):
    path = tmp_path / "airplane.stl"
    airplane_trimesh.export(path)
    mesh = one_mesh(path)
    assert len(mesh.pos) == len(airplane[0])   # every airplane vertex has a distinct position
    np.testing.assert_array_equal(mesh.pos[mesh.faces], airplane[0][airplane[1]].astype(np.float32))


def test_legacy_vtk_equals_the_same_surface_as_ply(tmp_path):
    globe = pv.read(GLOBE)   # its texture coordinates are doubles, which VTK's PLY writer refuses
    pv.PolyData(globe.points, globe.faces).save(tmp_path / "globe.ply")
    mesh, as_ply = one_mesh(GLOBE), one_mesh(tmp_path / "globe.ply")
    assert mesh.pos.shape == (540, 3) and mesh.faces.shape == (980, 3)   # POINTS 540, 980 triangles
    np.testing.assert_allclose(mesh.pos, as_ply.pos, rtol=1e-7)   # the PLY holds float32
    np.testing.assert_array_equal(mesh.faces, as_ply.faces)


def test_vtp_and_gzipped_vtk_read_like_the_original(tmp_path):
    original = one_mesh(GLOBE)
    pv.read(GLOBE).save(tmp_path / "globe.vtp")
    (tmp_path / "globe.vtk.gz").write_bytes(gzip.compress(open(GLOBE, "rb").read()))
    for name in ("globe.vtp", "globe.vtk.gz"):
        mesh = one_mesh(tmp_path / name)
        np.testing.assert_array_equal(mesh.pos, original.pos)
        np.testing.assert_array_equal(mesh.faces, original.faces)
    assert one_mesh(tmp_path / "globe.vtk.gz").sample_id == original.sample_id   # id of the content


@pytest.mark.parametrize("as_vtu", [False, True])
def test_volume_grid_becomes_its_closed_boundary_surface(tmp_path, as_vtu):
    path = HEXBEAM
    if as_vtu:
        path = tmp_path / "hexbeam.vtu"
        pv.read(HEXBEAM).save(path)
    mesh = one_mesh(path)
    # a 3 x 3 x 11 lattice of points: 9 are interior; 88 boundary quads, two triangles each
    assert mesh.pos.shape == (90, 3) and mesh.faces.shape == (176, 3)
    edges = np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert (uses == 2).all()                                   # closed: every edge in two triangles
    assert len(mesh.pos) - len(uses) + len(mesh.faces) == 2    # Euler characteristic of a sphere


def test_scene_of_two_bodies_is_one_sample_with_offset_faces(tmp_path):
    box = trimesh.creation.box(extents=(1, 2, 3))
    shift = np.eye(4)
    shift[:3, 3] = (10, 0, 0)
    scene = trimesh.Scene()
    scene.add_geometry(box, node_name="a", geom_name="a")
    scene.add_geometry(box.copy(), node_name="b", geom_name="b", transform=shift)
    scene.export(tmp_path / "two.glb")
    mesh = one_mesh(tmp_path / "two.glb")
    n = len(box.vertices)
    np.testing.assert_allclose(mesh.pos, np.vstack([box.vertices, box.vertices + (10, 0, 0)]))
    np.testing.assert_array_equal(mesh.faces, np.vstack([box.faces, box.faces + n]))


def test_point_cloud_has_no_faces(tmp_path):
    path = tmp_path / "points.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n")
    mesh = one_mesh(path)
    assert mesh.faces.shape == (0, 3)
    np.testing.assert_array_equal(mesh.pos, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_sample_id_follows_the_bytes_and_the_gltf_buffers(tmp_path, airplane_trimesh):
    shutil.copyfile(AIRPLANE, tmp_path / "a.ply")
    shutil.copyfile(AIRPLANE, tmp_path / "b.ply")
    assert one_mesh(tmp_path / "a.ply").sample_id == one_mesh(tmp_path / "b.ply").sample_id
    airplane_trimesh.export(tmp_path / "plane.gltf")
    before = one_mesh(tmp_path / "plane.gltf").sample_id
    buffer = next(p for p in tmp_path.iterdir() if p.suffix == ".bin")
    data = bytearray(buffer.read_bytes())
    data[0] ^= 1
    buffer.write_bytes(bytes(data))
    assert one_mesh(tmp_path / "plane.gltf").sample_id != before


# ---- broken files: each must give one ReadError of the right kind that names the file ----

def ascii_airplane() -> bytes:
    return open(AIRPLANE, "rb").read()


def binary_airplane(airplane_trimesh) -> bytes:
    return trimesh.exchange.ply.export_ply(airplane_trimesh, encoding="binary")


def test_truncated_ply_ascii_and_binary(tmp_path, airplane_trimesh):
    for name, data in (("ascii.ply", ascii_airplane()), ("binary.ply", binary_airplane(airplane_trimesh))):
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        read_error(tmp_path / name, "mesh", "truncated", mentions=("1335 vertex", "2452 face"))


def test_header_declaring_far_more_vertices_than_the_file_holds(tmp_path, airplane_trimesh):
    for name, data in (("ascii.ply", ascii_airplane()), ("binary.ply", binary_airplane(airplane_trimesh))):
        (tmp_path / name).write_bytes(data.replace(b"element vertex 1335", b"element vertex 1000000"))
        read_error(tmp_path / name, "mesh", "truncated", mentions=("1000000 vertex",))


@pytest.mark.parametrize("ext,kind", [("off", "truncated"), ("stl", "truncated"), ("glb", "truncated"),
                                      ("vtp", "truncated")])
def test_truncated_other_formats(tmp_path, airplane_trimesh, ext, kind):
    full = tmp_path / f"full.{ext}"
    if ext == "vtp":
        pv.read(GLOBE).save(full)
    else:
        airplane_trimesh.export(full)
    data = full.read_bytes()
    (tmp_path / f"cut.{ext}").write_bytes(data[: len(data) // 2])
    read_error(tmp_path / f"cut.{ext}", "mesh", kind)


def test_truncated_legacy_vtk(tmp_path):
    data = open(GLOBE, "rb").read()
    (tmp_path / "cut.vtk").write_bytes(data[: len(data) // 2])
    read_error(tmp_path / "cut.vtk", "mesh", "truncated", mentions=("VTK",))


@pytest.mark.parametrize("ext,kind", [("ply", "parse-error"), ("glb", "parse-error"), ("vtk", "parse-error"),
                                      ("vtu", "parse-error"), ("off", "parse-error"), ("obj", "empty")])
def test_garbage_bytes(tmp_path, ext, kind):
    path = tmp_path / f"garbage.{ext}"
    path.write_bytes(bytes(range(7, 250)) * 20)
    read_error(path, "mesh", kind)


def test_nan_coordinate(tmp_path):
    data = ascii_airplane().replace(b"896.994 48.7601 82.2656", b"nan 48.7601 82.2656", 1)
    (tmp_path / "nan.ply").write_bytes(data)
    read_error(tmp_path / "nan.ply", "mesh", "non-finite-coordinates", mentions=("vertex 0",))


def test_face_index_out_of_range(tmp_path, airplane_trimesh):
    text = trimesh.exchange.ply.export_ply(airplane_trimesh, encoding="ascii")
    first_face = " ".join(map(str, airplane_trimesh.faces[0]))
    (tmp_path / "bad.ply").write_bytes(text.replace(f"\n3 {first_face}".encode(), b"\n3 0 1 99999", 1))
    read_error(tmp_path / "bad.ply", "mesh", "index-out-of-range", mentions=("face 0", "99999", "1335"))
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    read_error(tmp_path / "bad.obj", "mesh", "index-out-of-range")


def test_empty_file_and_missing_gltf_buffer(tmp_path, airplane_trimesh):
    (tmp_path / "empty.stl").write_bytes(b"")
    read_error(tmp_path / "empty.stl", "mesh", "empty")
    airplane_trimesh.export(tmp_path / "plane.gltf")
    for buffer in tmp_path.glob("*.bin"):
        buffer.unlink()
    read_error(tmp_path / "plane.gltf", "mesh", "missing-file", mentions=(".bin",))
