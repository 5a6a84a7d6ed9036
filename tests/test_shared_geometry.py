"""Issue 11: one domain, many signals - a domain's geometry stored once, samples referencing it.

Spheres: HEALPix maps drawn by healpy.synfast, written as FITS. Traffic: a random geometric graph
of 200 sensors built by networkx (weights from a Gaussian kernel of distances, as METR-LA's
sensor graph is built) with a synthetic T x N table of readings.
"""
import os

import duckdb
import healpy as hp
import networkx as nx
import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from gdl_data import open_dataset
from gdl_data.loader import GeometryDataset, collate_graphs, to_pyg
from gdl_data.loader.collate import expand_geometry
from pipelines.execute import run_pipeline
from pipelines.spec import parse_spec
from storage import prune_versions

SPHERE_OPS = {"eigenbasis": {"k": 8}, "frames": {}, "neighborhoods": {}}


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    cl = 1.0 / (1 + np.arange(24)) ** 2
    values = []
    np.random.seed(0)    # synfast draws from numpy's global generator
    for i in range(6):
        m = hp.synfast(cl, 8).astype(np.float32)
        hp.write_map(str(folder / f"map{i}.fits"), m, dtype=np.float32)
        values.append(m)
    return folder, values


def _sphere_spec(out, source, share=True):
    return parse_spec({"name": "maps", "domain": "sphere", "source": str(source), "output": str(out),
                       "ops": SPHERE_OPS, "shard_size": 2, "share_geometry": share})


@pytest.fixture(scope="module")
def both(maps, tmp_path_factory, dask_client):
    folder, _ = maps
    root = tmp_path_factory.mktemp("ds")
    shared = run_pipeline(_sphere_spec(root / "shared", folder), dask_client, progress=False)
    copies = run_pipeline(_sphere_spec(root / "copies", folder, share=False), dask_client, progress=False)
    return root / "shared", root / "copies", shared, copies


def test_shared_and_per_sample_storage_give_identical_rows(maps, both):
    shared_uri, copies_uri, shared, copies = both
    a, b = open_dataset(shared_uri), open_dataset(copies_uri)
    assert len(a) == len(b) == 6
    for i in range(6):
        ra, rb = a[i], b[i]
        assert set(ra) == set(rb) | {"geometry_key"}
        for key, value in rb.items():
            assert (ra[key] == value) if isinstance(value, str) else np.array_equal(ra[key], value), key
    # the values are the FITS maps, bit for bit (float32 in the file, float32 stored)
    for i, m in enumerate(maps[1]):
        assert np.array_equal(a[i]["values"][:, 0], m)
    # geometry computed at most once per worker (two here) and stored once; per sample: six times
    computed = shared["run"]["op_samples_computed"]
    assert set(computed) == set(SPHERE_OPS) and all(1 <= n <= 2 for n in computed.values())
    assert shared["run"]["geometry_computed"] + shared["run"]["geometry_reused"] == 6
    assert copies["run"]["op_samples_computed"]["eigenbasis"] == 6
    assert len(shared["geometry"]["files"]) == 1 and os.listdir(shared_uri / "geometry")
    assert "evecs" in shared["columns"] and shared["columns"]["evecs"]["stats"]["shape"] == [768, 8]
    assert list(a)[3]["sample_id"] == b[3]["sample_id"]       # iteration joins too
    scanned = a.scan(["sample_id", "nside", "evals"], filter=pc.field("nside") == 8)
    assert scanned.num_rows == 6 and scanned.column("evals").to_pylist()[0] == a[0]["evals"].tobytes()


def test_duckdb_reads_the_documented_join(both):
    shared_uri, _, _, _ = both
    m = open_dataset(shared_uri).manifest
    # the README's query, verbatim but for the folder
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    query = next(block for block in readme.split("```sql")[1:] if "JOIN" in block).split("```")[0]
    con = duckdb.connect()
    *setup, select = [q for q in query.replace("storage/maps", str(shared_uri)).split(";") if q.strip()]
    for statement in setup:
        con.execute(statement)
    rows = con.execute(select).fetchall()
    assert len(rows) == 6 and {r[1] for r in rows} == {8}
    evals = np.frombuffer(rows[0][2], m["columns"]["evals"]["dtype"]).reshape(rows[0][3])
    assert np.array_equal(evals, open_dataset(shared_uri)[0]["evals"])


def test_a_batch_over_one_grid_holds_one_copy(both):
    shared_uri, copies_uri, _, _ = both
    columns = ["values", "pos", "evecs", "edge_index", "geometry_key"]
    samples = [GeometryDataset(shared_uri, columns=columns)[i] for i in range(4)]
    batch = collate_graphs(samples)
    assert len(batch["geometry"]) == 1 and batch["geometry_index"].tolist() == [0, 0, 0, 0]
    assert batch["values"].shape == (4 * 768, 1) and batch["geometry"][0]["pos"].shape == (768, 3)
    assert "pos" not in batch and "evecs" not in batch
    # expanded, it is the batch of per-sample copies
    plain = collate_graphs([GeometryDataset(copies_uri, columns=columns[:-1])[i] for i in range(4)])
    expanded = expand_geometry(batch)
    for key in ("values", "pos", "evecs", "edge_index", "batch", "ptr"):
        assert torch.equal(expanded[key], plain[key]), key
    assert to_pyg(batch)["edge_index"].shape == plain["edge_index"].shape


def test_adding_a_map_computes_no_geometry_and_pruning_keeps_referenced_files(maps, tmp_path, dask_client):
    folder, _ = maps
    src = tmp_path / "src"
    src.mkdir()
    for name in sorted(os.listdir(folder))[:3]:
        (src / name).write_bytes((folder / name).read_bytes())
    spec = _sphere_spec(tmp_path / "ds", src)
    run_pipeline(spec, dask_client, progress=False)
    (src / "map5.fits").write_bytes((folder / "map5.fits").read_bytes())
    second = run_pipeline(spec, dask_client, progress=False)
    assert second["run"]["op_samples_computed"] == {} and second["run"]["samples_read"] == 1
    assert second["sample_count"] == 4
    # a parameter change makes a new geometry; pruning to one version deletes the old file only
    changed = parse_spec({**_raw(spec), "ops": {**SPHERE_OPS, "eigenbasis": {"k": 6}}})
    third = run_pipeline(changed, dask_client, progress=False)
    assert len(os.listdir(tmp_path / "ds" / "geometry")) == 2
    prune_versions(spec.output, 1, grace=0)     # no reader holds the old version here
    assert os.listdir(tmp_path / "ds" / "geometry") == [os.path.basename(third["geometry"]["files"][0]["path"])]
    assert open_dataset(spec.output)[0]["evals"].shape == (6,)


def _raw(spec):
    return {"name": spec.name, "domain": spec.domain, "source": spec.source, "output": spec.output,
            "shard_size": spec.shard_size}


# --- signals over one graph: a traffic-style dataset -------------------------------------------

T, WINDOW, HORIZON = 40, 6, 2


def _traffic(folder, n=200, seed=0):
    g = nx.random_geometric_graph(n, 0.12, seed=seed)
    pos = nx.get_node_attributes(g, "pos")
    for u, v in g.edges:
        d = np.hypot(*(np.subtract(pos[u], pos[v])))
        g.edges[u, v]["weight"] = float(np.exp(-(d / 0.1) ** 2))
    for node in g.nodes:
        del g.nodes[node]["pos"]
    h = nx.relabel_nodes(g, {v: f"s{v}" for v in g.nodes})
    nx.write_graphml(h, folder / "sensors.graphml")
    readings = np.round(np.random.default_rng(seed).normal(60, 10, (T, n)), 3)
    order = np.random.default_rng(1).permutation(n)      # columns in another order than the graph's
    _write_csv(folder / "sensors.signals.csv", [f"s{i}" for i in order], readings[:, order])
    (folder / "sensors.signals.yaml").write_text(f"window: {WINDOW}\nhorizon: {HORIZON}\nstride: 1\n")
    return h, readings


def _write_csv(path, names, values):
    lines = ["time," + ",".join(names)] + [f"t{t}," + ",".join(repr(float(v)) for v in row)
                                            for t, row in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


def _graph_spec(tmp_path, folder):
    return parse_spec({"name": "traffic", "domain": "graph", "source": str(folder),
                       "output": str(tmp_path / "traffic"), "shard_size": 8,
                       "ops": {"eigenbasis": {"k": 8}, "neighborhoods": {}}})


def test_traffic_windows_share_one_graph_and_an_edit_recomputes_only_its_windows(tmp_path, dask_client):
    folder = tmp_path / "raw"
    folder.mkdir()
    graph, readings = _traffic(folder)
    spec = _graph_spec(tmp_path, folder)
    first = run_pipeline(spec, dask_client, progress=False)
    windows = T - WINDOW - HORIZON + 1
    assert first["sample_count"] == windows and first["error_count"] == 0
    assert set(first["run"]["op_samples_computed"]) == {"eigenbasis", "neighborhoods"}
    assert first["run"]["op_samples_computed"]["eigenbasis"] <= 2      # once per worker at most
    assert len(first["geometry"]["files"]) == 1
    ds = open_dataset(spec.output)
    row = ds[5]
    assert list(row["node_ids"]) == [f"s{v}" for v in range(200)] and row["num_nodes"] == 200
    assert np.allclose(row["x"], readings[5:5 + WINDOW].T) and np.allclose(row["y"], readings[11:13].T)
    assert row["edge_index"].shape[1] == 2 * graph.number_of_edges()
    # edit one reading of row 20: windows 13..20 hold it (rows i .. i+7)
    readings[20, 7] += 1.0
    _write_csv(folder / "sensors.signals.csv", [f"s{i}" for i in np.random.default_rng(1).permutation(200)],
               readings[:, np.random.default_rng(1).permutation(200)])
    second = run_pipeline(spec, dask_client, progress=False)
    assert second["run"]["samples_read"] == WINDOW + HORIZON
    assert second["run"]["op_samples_computed"] == {}
    after = open_dataset(spec.output)
    assert np.allclose(after[20]["x"][7], readings[20:26, 7])
    assert all("evecs" in r and "geometry_key" in r for r in after)     # copied rows keep their key
    # editing the domain (one edge less) recomputes its geometry and every window
    graph.remove_edge(*next(iter(graph.edges)))
    nx.write_graphml(graph, folder / "sensors.graphml")
    third = run_pipeline(spec, dask_client, progress=False)
    assert third["run"]["samples_read"] == windows and third["run"]["geometry_computed"] >= 1
    assert open_dataset(spec.output)[0]["edge_index"].shape[1] == 2 * graph.number_of_edges()


@pytest.mark.parametrize("case, kind", [("unknown", "unknown-node"), ("missing", "shape-mismatch"),
                                        ("nan", "missing-values"), ("npy", "shape-mismatch")])
def test_bad_signal_tables_are_one_line_errors_naming_the_file(tmp_path, dask_client, case, kind):
    folder = tmp_path / "raw"
    folder.mkdir()
    _, readings = _traffic(folder, n=30)
    names = [f"s{i}" for i in range(30)]
    table = folder / "sensors.signals.csv"
    if case == "unknown":
        _write_csv(table, names[:-1] + ["s999"], readings)
    elif case == "missing":
        _write_csv(table, names[:-1], readings[:, :-1])
    elif case == "nan":
        readings[3, 4] = np.nan
        _write_csv(table, names, readings)
    else:
        table.unlink()
        np.save(folder / "sensors.signals.npy", readings[:, :-1])
    manifest = run_pipeline(_graph_spec(tmp_path, folder), dask_client, progress=False)
    errors = open_dataset(manifest_uri := str(tmp_path / "traffic")).errors.to_pylist()
    assert errors and {e["error"] for e in errors} == {kind}, errors[:2]
    assert all("sensors.signals" in e["message"] and "\n" not in e["message"] for e in errors)
    if case == "nan":     # only the windows holding row 3 fail; the others are stored
        assert len(errors) == 4 and open_dataset(manifest_uri).manifest["sample_count"] == 33 - 4
    if case == "unknown":
        assert "s999" in errors[0]["message"]


def test_maps_over_one_mesh_beside_ordinary_meshes(tmp_path, dask_client):
    import trimesh
    raw = tmp_path / "raw"
    raw.mkdir()
    mesh = trimesh.creation.icosphere(subdivisions=2)
    mesh.export(raw / "cortex.ply")
    trimesh.creation.box().export(raw / "other.ply")
    maps = np.random.default_rng(0).normal(size=(5, len(mesh.vertices)))
    np.save(raw / "cortex.signals.npy", maps)
    spec = parse_spec({"name": "m", "domain": "mesh", "source": str(raw), "output": str(tmp_path / "ds"),
                       "ops": {"eigenbasis": {"k": 6}, "frames": {}}})
    manifest = run_pipeline(spec, dask_client, progress=False)
    assert manifest["sample_count"] == 6 and len(manifest["geometry"]["files"]) == 1
    rows = list(open_dataset(spec.output))
    assert [r["source"].rsplit("/", 1)[1] for r in rows] == [f"cortex.signals.npy#{i}" for i in range(5)] + ["other.ply"]
    for i in range(5):
        assert np.allclose(rows[i]["x"][:, 0], maps[i]) and np.array_equal(rows[i]["faces"], mesh.faces)
    assert "geometry_key" not in rows[5] and rows[5]["evecs"].shape == (8, 6)   # stored in its own row
