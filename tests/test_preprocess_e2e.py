"""Issue 2: `gdl preprocess` end to end on every domain (real files -> Dask -> Parquet -> read
back), values checked against the sources read by their own libraries; bad input recorded."""
import os
import shutil

import healpy as hp
import networkx as nx
import numpy as np
import pytest
import trimesh
import yaml
from rdkit import Chem

from flows.cli import main
from gdl_data import open_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    from pipelines.demo_data import materialise_demo_data
    return materialise_demo_data(str(tmp_path_factory.mktemp("raw")))


def _preprocess(tmp_path, dask_client, domain, source, ops, *flags):
    spec = {"name": f"e2e-{domain}", "domain": domain, "source": source, "output": str(tmp_path / domain),
            "ops": ops}
    path = tmp_path / f"{domain}.yaml"
    path.write_text(yaml.safe_dump(spec))
    code = main(["preprocess", str(path), "--dask-address", dask_client.scheduler.address, *flags])
    return code, open_dataset(str(tmp_path / domain))


def _by_file(ds):
    return {os.path.basename(s["source"]): s for s in ds}


def test_meshes_read_back_equal_to_the_files(tmp_path, dask_client, raw):
    code, ds = _preprocess(tmp_path, dask_client, "mesh", raw["mesh"], {"eigenbasis": {"k": 8}})
    assert code == 0 and ds.manifest["error_count"] == 0
    stored = _by_file(ds)
    for name in ("airplane.ply", "ant.ply", "nut.ply"):
        ref = trimesh.load(os.path.join(raw["mesh"], name), process=False)
        np.testing.assert_array_equal(stored[name]["faces"], ref.faces)
        np.testing.assert_array_equal(stored[name]["pos"], ref.vertices.astype(np.float32))
        assert stored[name]["evecs"].shape == (len(ref.vertices), 8)
    assert stored["globe.vtk"]["pos"].shape[1] == 3 and len(stored) == 6


def test_molecules_read_back_equal_to_rdkit(tmp_path, dask_client, raw):
    code, ds = _preprocess(tmp_path, dask_client, "molecule", raw["molecule"], {"eigenbasis": {"k": 4}})
    assert code == 0
    sdf = os.path.join(raw["molecule"], "cdk2.sdf")
    mols = [m for m in Chem.SDMolSupplier(sdf, removeHs=False)]
    stored = {s["source"]: s for s in ds}
    for i in (0, 5, len(mols) - 1):
        s = stored[f"{sdf}#{i}"]
        np.testing.assert_array_equal(s["z"], [a.GetAtomicNum() for a in mols[i].GetAtoms()])
        np.testing.assert_allclose(s["pos"], mols[i].GetConformer().GetPositions(), atol=1e-4)
        bonds = {(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mols[i].GetBonds()}
        assert {tuple(e) for e in s["bond_index"].T} == bonds | {(j, i_) for i_, j in bonds}


def test_graphs_read_back_equal_to_networkx(tmp_path, dask_client, raw):
    code, ds = _preprocess(tmp_path, dask_client, "graph", raw["graph"], {"geodesics": {"sources": 2}})
    assert code == 0
    karate = _by_file(ds)["karate_club.graphml"]
    ref = nx.read_graphml(os.path.join(raw["graph"], "karate_club.graphml"))
    ids = list(karate["node_ids"])
    assert ids == list(ref.nodes)
    edges = {(ids[a], ids[b]) for a, b in karate["edge_index"].T}
    assert edges == set(ref.edges) | {(v, u) for u, v in ref.edges}
    assert list(karate["y"]) == [ref.nodes[n]["y"] for n in ref.nodes]


def test_sphere_maps_read_back_equal_to_healpy(tmp_path, dask_client, raw):
    code, ds = _preprocess(tmp_path, dask_client, "sphere", raw["sphere"], {"eigenbasis": {"k": 4}})
    assert code == 0
    for name, s in _by_file(ds).items():
        ref = hp.read_map(os.path.join(raw["sphere"], name), nest=False)  # healpy converts to RING
        np.testing.assert_allclose(s["values"][:, 0], ref.astype(np.float32), rtol=1e-6)
        assert s["nside"] == hp.npix2nside(len(ref))


def _bad_inputs(folder, raw):
    """Good files mixed with truncated, garbage, NaN, out-of-range, unknown-element and
    wrong-length ones, one folder per domain."""
    bad = {d: folder / d for d in ("mesh", "molecule", "sphere")}
    for d in bad.values():
        d.mkdir(parents=True)
    shutil.copy(os.path.join(raw["mesh"], "nut.ply"), bad["mesh"])
    data = open(os.path.join(raw["mesh"], "nut.ply"), "rb").read()
    (bad["mesh"] / "truncated.ply").write_bytes(data[: len(data) // 2])
    (bad["mesh"] / "garbage.stl").write_bytes(os.urandom(3000))
    (bad["mesh"] / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    (bad["mesh"] / "out_of_range.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    shutil.copy(os.path.join(raw["molecule"], "cdk2.sdf"), bad["molecule"])
    (bad["molecule"] / "unknown.xyz").write_text("2\nwater?\nO 0 0 0\nQq 0 0 1\n")
    shutil.copy(os.path.join(raw["sphere"], "powerlaw_alpha1.fits"), bad["sphere"])
    np.save(bad["sphere"] / "wrong_length.npy", np.zeros(1000))
    return bad


def test_bad_input_is_recorded_and_every_good_sample_kept(tmp_path, dask_client, raw, capsys):
    bad = _bad_inputs(tmp_path / "bad", raw)
    code, ds = _preprocess(tmp_path, dask_client, "mesh", str(bad["mesh"]), {"eigenbasis": {"k": 4}})
    out = capsys.readouterr().out
    assert code == 0 and "4 failed" in out and "gdl inspect" in out
    assert [os.path.basename(s["source"]) for s in ds] == ["nut.ply"]
    errors = {os.path.basename(e["source"]): e for e in ds.errors.to_pylist()}
    assert set(errors) == {"truncated.ply", "garbage.stl", "nan.obj", "out_of_range.off"}
    for name, e in errors.items():
        assert e["stage"] == "read" and name in e["message"] and "Traceback" not in e["message"]

    code, ds = _preprocess(tmp_path, dask_client, "molecule", str(bad["molecule"]), {}, "--fail-on-errors")
    assert code == 3                                  # documented: a sample failed and it was asked
    assert len(ds) == len(Chem.SDMolSupplier(os.path.join(raw["molecule"], "cdk2.sdf")))
    assert [e["error"] for e in ds.errors.to_pylist()] == ["unknown-element"]

    code, ds = _preprocess(tmp_path, dask_client, "sphere", str(bad["sphere"]), {})
    assert code == 0 and len(ds) == 1
    assert [e["error"] for e in ds.errors.to_pylist()] == ["wrong-map-length"]


def test_an_invalid_spec_is_refused_with_what_to_write(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "domain": "mesh", "source": ".", "output": "o",
                                    "ops": {"eigenbasis": {"kk": 3}}}))
    assert main(["preprocess", str(path)]) == 2
    assert "did you mean 'k'" in capsys.readouterr().err


def test_show_renders_a_stored_sample_to_png(tmp_path, dask_client, raw):
    _, ds = _preprocess(tmp_path, dask_client, "sphere", raw["sphere"], {"eigenbasis": {"k": 4}})
    out = tmp_path / "eig.png"
    assert main(["show", str(tmp_path / "sphere"), "1", "--column", "evecs:1", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert main(["show", str(tmp_path / "sphere"), "--column", "geo_dist:0", "--out", str(out)]) == 2
