"""Issue 12, hostile inputs are samples, not crashes: each becomes one error row naming the file,
and the good files of the same run are all there."""
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
import trimesh

from gdl_data import open_dataset
from gdl_data.errors import SpecError
from gdl_data.readers.validate import TimeLimitExceeded, with_time_limit
from pipelines.execute import run_pipeline
from reader_checks import read_error, read_samples
from safety_helpers import REPO, mesh_spec, write_meshes

GLOBE_VTK = os.path.join(os.path.dirname(__import__("pyvista").examples.__file__), "globe.vtk")


def _errors_by_file(uri):
    return {os.path.basename(e["source"]): e for e in open_dataset(uri).errors.to_pylist()}


def _gzip_bomb(path, inflated=1 << 30):
    """A .vtk.gz of a legacy VTK header followed by `inflated` bytes of zeros (~1 MB on disk)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(16 << 20)
    with open(path, "wb") as fh:
        fh.write(deflate.compress(b"# vtk DataFile Version 3.0\nbomb\nBINARY\nDATASET POLYDATA\n"))
        for _ in range(inflated // len(block)):
            fh.write(deflate.compress(block))
        fh.write(deflate.flush())


def test_a_gzip_bomb_is_refused_within_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.vtk.gz"
    _gzip_bomb(bomb)
    assert bomb.stat().st_size < 2 << 20
    # in a fresh process, so its peak memory is the reader's alone: VmHWM is the peak of this
    # process's own memory (ru_maxrss would also count the parent's, inherited across exec)
    code = ("from gdl_data.readers import iter_samples; "
            f"items = list(iter_samples({str(bomb)!r}, 'mesh')); print(items[0].kind, items[0].detail); "
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
    kind_line, peak_kb = proc.stdout.strip().splitlines()
    assert kind_line.startswith("decompression-limit") and "decompression bomb" in kind_line, proc.stderr
    assert int(peak_kb) < 600 * 1024, f"peak RSS {int(peak_kb) >> 10} MiB"   # not the 1 GiB it inflates to


def test_a_gzipped_mesh_within_the_limit_still_reads(tmp_path):
    (tmp_path / "globe.vtk.gz").write_bytes(gzip.compress(open(GLOBE_VTK, "rb").read()))
    read_samples(tmp_path / "globe.vtk.gz", "mesh")


def _gltf(folder, name, buffer_uri):
    """A real one-triangle glTF (trimesh's export) whose first buffer is the file `buffer_uri`;
    returns that buffer's bytes (the others are written beside the file)."""
    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False)
    files = trimesh.exchange.gltf.export_gltf(trimesh.Scene(mesh))
    document = json.loads(files.pop("model.gltf"))
    first = document["buffers"][0]["uri"]
    for other, data in files.items():
        if other != first:
            (folder / other).write_bytes(data)
    document["buffers"][0]["uri"] = buffer_uri
    (folder / name).write_text(json.dumps(document))
    return files[first]


@pytest.mark.parametrize("uri", ["/dev/zero", "/etc/hostname", "../outside.bin", "sub/../../outside.bin",
                                 "link-out.bin"])
def test_gltf_buffers_outside_the_files_folder_are_refused_unread(tmp_path, uri):
    folder = tmp_path / "meshes"
    folder.mkdir()
    data = _gltf(folder, "evil.gltf", uri)
    (tmp_path / "outside.bin").write_bytes(data)
    os.symlink(tmp_path / "outside.bin", folder / "link-out.bin")
    error = read_error(folder / "evil.gltf", "mesh", "external-reference", mentions=(uri, "outside its own folder"))
    assert "bytes" not in error.detail     # nothing about the outside file (its size) leaks


def test_gltf_buffers_beside_the_file_and_in_subfolders_still_read(tmp_path):
    (tmp_path / "sub").mkdir()
    data = _gltf(tmp_path, "ok.gltf", "sub/buffer%20one.bin")
    (tmp_path / "sub" / "buffer one.bin").write_bytes(data)
    assert len(read_samples(tmp_path / "ok.gltf", "mesh")[0].faces) == 1


def test_a_fifo_as_gltf_buffer_is_refused_without_blocking(tmp_path):
    data = _gltf(tmp_path, "fifo.gltf", "pipe.bin")
    os.mkfifo(tmp_path / "pipe.bin")
    start = time.monotonic()
    read_error(tmp_path / "fifo.gltf", "mesh", "special-file", mentions=("FIFO",))
    assert time.monotonic() - start < 5 and data


def test_obj_material_libraries_outside_the_folder_are_not_read(tmp_path):
    (tmp_path / "m.obj").write_text("mtllib /dev/zero\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert len(read_samples(tmp_path / "m.obj", "mesh")[0].faces) == 1   # materials are skipped


def test_vtk_header_declaring_more_than_the_file_holds_is_refused_before_allocation(tmp_path):
    (tmp_path / "huge.vtk").write_bytes(b"# vtk DataFile Version 3.0\nx\nASCII\nDATASET POLYDATA\n"
                                        b"POINTS 4000000000 float\n0 0 0\n")
    read_error(tmp_path / "huge.vtk", "mesh", "truncated", mentions=("POINTS 4000000000",))
    (tmp_path / "huge.vtp").write_bytes(b'<VTKFile type="PolyData"><PolyData><Piece NumberOfPoints="9000000000"'
                                        b' NumberOfPolys="1"></Piece></PolyData></VTKFile>')
    read_error(tmp_path / "huge.vtp", "mesh", "truncated", mentions=("NumberOfPoints=9000000000",))


def test_a_mesh_whose_faces_all_have_zero_area_is_an_error_naming_the_file(tmp_path):
    collinear = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], [[0, 1, 2], [1, 2, 3]], process=False)
    collinear.export(tmp_path / "flat.ply")
    read_error(tmp_path / "flat.ply", "mesh", "zero-area", mentions=("all 2 faces have zero area",))
    tiny = trimesh.creation.icosphere(subdivisions=1)
    tiny.vertices *= 1e-6   # small but real: still a surface
    tiny.export(tmp_path / "tiny.ply")
    read_samples(tmp_path / "tiny.ply", "mesh")


def test_graphml_edge_to_an_undeclared_node_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "g.graphml").write_text(
        '<?xml version="1.0"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
        '<graph edgedefault="undirected"><node id="a"/><node id="b"/><edge source="a" target="b"/>'
        '<edge source="a" target="ghost"/></graph></graphml>')
    read_error(tmp_path / "g.graphml", "graph", "undeclared-node", mentions=("ghost", "edge 1"))


def _special_files(folder):
    """A FIFO, a link to /dev/zero, a dangling link and a socket, all named like meshes."""
    os.mkfifo(folder / "fifo.ply")
    os.symlink("/dev/zero", folder / "zero.ply")
    os.symlink(folder / "no-such-file.ply", folder / "dangling.ply")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.ply"))
    return sock


def test_special_files_and_bombs_in_the_source_become_error_rows_and_the_run_goes_on(tmp_path, dask_client):
    """The rows 'a worker dies, KilledWorker, no file named' and 'a dangling symlink aborts the
    whole run': one real run over good meshes and every hostile file, twice (re-runs work)."""
    raw = write_meshes(tmp_path / "raw", 3)
    sock = _special_files(tmp_path / "raw")
    _gzip_bomb(raw / "bomb.vtk.gz", inflated=256 << 20)   # 256 MiB: over the limit for its ~250 kB
    _gltf(raw, "zero.gltf", "/dev/zero")
    _gltf(raw, "hostname.gltf", "/etc/hostname")
    start = time.monotonic()
    try:
        manifest = run_pipeline(mesh_spec(raw, tmp_path / "ds"), dask_client, progress=False)
        again = run_pipeline(mesh_spec(raw, tmp_path / "ds"), dask_client, progress=False)
    finally:
        sock.close()
    assert time.monotonic() - start < 240
    assert manifest["sample_count"] == 3 and manifest["error_count"] == 7
    assert again["sample_count"] == 3 and again["error_count"] == 7
    errors = _errors_by_file(str(tmp_path / "ds"))
    assert errors["bomb.vtk.gz"]["error"] == "decompression-limit"
    assert errors["zero.gltf"]["error"] == errors["hostname.gltf"]["error"] == "external-reference"
    assert errors["fifo.ply"]["error"] == "special-file" and "FIFO" in errors["fifo.ply"]["message"]
    assert errors["zero.ply"]["error"] == "special-file" and "/dev/zero" in errors["zero.ply"]["message"]
    assert errors["sock.ply"]["error"] == "special-file" and "socket" in errors["sock.ply"]["message"]
    assert errors["dangling.ply"]["error"] == "dangling-link"
    assert all(e["message"].startswith(e["source"]) for e in errors.values())


def test_the_cli_does_not_hang_on_a_fifo(tmp_path):
    """The row 'planning hangs with no log': a real `gdl preprocess` process on a source holding
    a FIFO finishes, with the FIFO as one failed sample (nothing ever opens it for reading)."""
    from safety_helpers import gdl
    import yaml
    raw = write_meshes(tmp_path / "raw", 2)
    os.mkfifo(raw / "fifo.ply")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "t", "domain": "mesh", "source": str(raw),
                                    "output": str(tmp_path / "ds"), "ops": {"eigenbasis": {"k": 4}}}))
    code, text = gdl("preprocess", str(spec), timeout=400)
    assert code == 0 and "2 samples written, 1 failed" in text, text[-2000:]


def test_a_time_limit_abandons_a_blocked_read_and_the_caller_goes_on(tmp_path):
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(TimeLimitExceeded, match="reading it did not finish within 1 s"):
        with_time_limit(lambda: open(fifo, "rb").read(), 1.0, "reading it")
    assert time.monotonic() - start < 3
    threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True).start()   # unblock the reader


def test_a_single_atom_molecule_gives_a_row_in_every_op(tmp_path, dask_client):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "helium.xyz").write_text("1\nisolated atom\nHe 0.0 0.0 0.0\n")
    (raw / "water.xyz").write_text("3\nwater\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n")
    ops = {"eigenbasis": {"k": 4}, "geodesics": {"sources": "all"}, "neighborhoods": {"radius": 5.0}}
    manifest = run_pipeline(mesh_spec(raw, tmp_path / "ds", domain="molecule", ops=ops), dask_client,
                            progress=False)
    assert manifest["error_count"] == 0 and manifest["sample_count"] == 2
    helium = next(s for s in open_dataset(str(tmp_path / "ds")) if s["source"].endswith("helium.xyz#0"))
    np.testing.assert_array_equal(helium["geo_dist"], [[0.0]])
    assert helium["edge_index"].shape == (2, 0) and helium["bond_index"].shape == (2, 0)
    assert helium["evals"].shape == (1,) and helium["evals"][0] == 0


def test_an_empty_source_is_refused_and_the_dataset_kept(tmp_path, dask_client):
    raw = write_meshes(tmp_path / "raw", 2)
    out = tmp_path / "ds"
    run_pipeline(mesh_spec(raw, out), dask_client, progress=False)
    for f in os.listdir(raw):
        os.unlink(raw / f)
    (raw / "notes.txt").write_text("not a mesh")
    with pytest.raises(SpecError, match=r"holds no mesh files .*; 1 other files, e.g. notes.txt. Nothing was written"):
        run_pipeline(mesh_spec(raw, out), dask_client, progress=False)
    assert open_dataset(str(out)).version == 1 and len(open_dataset(str(out))) == 2


def test_a_folder_named_like_a_glob_is_taken_literally(tmp_path, dask_client):
    literal = write_meshes(tmp_path / "glob[1]", 2)
    write_meshes(tmp_path / "glob1", 3)   # what `glob[1]` would match as a pattern
    manifest = run_pipeline(mesh_spec(literal, tmp_path / "ds"), dask_client, progress=False)
    assert manifest["sample_count"] == 2
    assert all("glob[1]" in s["source"] for s in open_dataset(str(tmp_path / "ds")))
    pattern = run_pipeline(mesh_spec(str(tmp_path / "glob[0-9]") + "/*.ply", tmp_path / "ds2"), dask_client,
                           progress=False)
    assert pattern["sample_count"] == 3   # a path that does not exist is a glob


def test_gdl_inspect_works_on_a_dataset_whose_shard_had_every_file_fail(tmp_path, dask_client):
    from safety_helpers import gdl
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(2):
        (raw / f"bad{i}.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\n\x00garbage")
    write_meshes(tmp_path / "raw", 1)
    run_pipeline(mesh_spec(raw, tmp_path / "ds"), dask_client, progress=False)   # shard 1: bad0, bad1
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert any(s["path"] is None for s in manifest["shards"])
    code, text = gdl("inspect", str(tmp_path / "ds"), env_extra={"COLUMNS": "300"})
    assert code == 0 and "1 samples, 2 failed" in text and "bad0.ply" in text, text
    code, text = gdl("inspect", str(tmp_path / "ds"), "--json")
    info = json.loads(text)
    assert code == 0 and info["failed"] == 2 and info["bytes_on_disk"] > 0


def test_coordinates_beyond_float32_are_refused_not_stored_as_inf(tmp_path):
    """Found by the fuzz test: '1e308' is finite as read (float64) but inf once stored (float32)."""
    (tmp_path / "far.off").write_text("OFF\n3 1 0\n0 0 0\n1e308 0 0\n0 1 0\n3 0 1 2\n")
    read_error(tmp_path / "far.off", "mesh", "out-of-range", mentions=("1e+308", "float32"))
    np.save(tmp_path / "map.npy", np.full(12, 1e300))
    read_error(tmp_path / "map.npy", "sphere", "out-of-range", mentions=("pixel values",))
