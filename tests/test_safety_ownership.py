"""Issue 12, ownership: gdl writes only into a new/empty folder or its own dataset of the same
name and domain, never into (or around) the source, and prunes only files its history lists."""
import json
import os
import time

import pytest
import yaml

from gdl_data import open_dataset
from gdl_data.loader import GeometryStream
from pipelines.execute import run_pipeline
from storage import OwnershipError, list_versions
from storage.ownership import MARKER
from storage.retention import GRACE_ENV, prune_versions
from flows.cli import main
from safety_helpers import mesh_spec, snapshot, write_meshes


@pytest.fixture
def raw(tmp_path):
    return write_meshes(tmp_path / "raw")


def _users_folder(path):
    """A folder gdl did not create, holding the user's files where gdl keeps its own."""
    for rel, data in {"shards/mine.parquet": b"PAR1 user data", "errors/notes.txt": b"keep me",
                      "shards/0123.csv": b"a,b\n1,2\n", "README": b"my project"}.items():
        os.makedirs(os.path.dirname(path / rel), exist_ok=True)
        (path / rel).write_bytes(data)
    return snapshot(path)


def test_an_existing_folder_gdl_did_not_create_is_refused_with_exit_2(tmp_path, raw, dask_client, capsys):
    out = tmp_path / "users-folder"
    before = _users_folder(out)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "t", "domain": "mesh", "source": str(raw), "output": str(out),
                                    "ops": {"eigenbasis": {"k": 4}}}))
    code = main(["preprocess", str(spec), "--dask-address", dask_client.scheduler.address])
    text = capsys.readouterr().err
    assert code == 2, text
    last = text.strip().splitlines()[-1]   # Prefect's own log of the failed flow run comes before
    assert last.startswith("gdl preprocess: error: output") and "already holds files gdl did not write" in last
    assert "new or empty folder" in last
    assert snapshot(out) == before   # byte-identical: nothing added, nothing removed


def test_the_same_refusal_in_a_notebook_and_no_lock_left(tmp_path, raw, dask_client):
    out = tmp_path / "users-folder"
    before = _users_folder(out)
    with pytest.raises(OwnershipError, match="README"):
        run_pipeline(mesh_spec(raw, out), dask_client, progress=False)
    assert snapshot(out) == before


def test_another_specs_dataset_of_another_domain_is_refused(tmp_path, raw, dask_client):
    out = tmp_path / "ds"
    run_pipeline(mesh_spec(raw, out, name="shapes"), dask_client, progress=False)
    before = snapshot(out)
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    (graphs / "g.csv").write_text("src,dst\n0,1\n1,2\n")
    with pytest.raises(OwnershipError, match=r"holds the dataset 'shapes' \(domain mesh\)"):
        run_pipeline(mesh_spec(graphs, out, name="karate", domain="graph", ops={}), dask_client, progress=False)
    with pytest.raises(OwnershipError, match="rename the spec to 'shapes'"):
        run_pipeline(mesh_spec(raw, out, name="other"), dask_client, progress=False)
    assert snapshot(out) == before and list_versions(str(out)) == [1]
    # the same name and domain is the owner: it may add versions
    assert run_pipeline(mesh_spec(raw, out, name="shapes", ops={"eigenbasis": {"k": 3}}), dask_client,
                        progress=False)["version"] == 2


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_output_and_source_must_not_overlap(tmp_path, raw, dask_client, where):
    before = snapshot(raw)
    out = {"same": raw, "inside": raw / "dataset", "around": tmp_path}[where]
    with pytest.raises(OwnershipError, match="source"):
        run_pipeline(mesh_spec(raw, out), dask_client, progress=False)
    assert snapshot(raw) == before   # not even an empty folder or a lock file left behind


def test_a_dataset_written_before_markers_is_recognised_by_its_manifest(tmp_path, raw, dask_client):
    out = tmp_path / "ds"
    run_pipeline(mesh_spec(raw, out), dask_client, progress=False)
    (out / MARKER).unlink()   # as datasets written before issue 12 look
    assert run_pipeline(mesh_spec(raw, out, ops={"eigenbasis": {"k": 3}}), dask_client,
                        progress=False)["version"] == 2
    assert json.loads((out / MARKER).read_text())["name"] == "t"
    (out / MARKER).unlink()
    with pytest.raises(OwnershipError, match="holds the dataset 't'"):
        run_pipeline(mesh_spec(raw, out, name="u"), dask_client, progress=False)


def test_pruning_deletes_only_files_the_history_lists(tmp_path, raw, dask_client, monkeypatch):
    monkeypatch.setenv(GRACE_ENV, "0")
    out = tmp_path / "ds"
    run_pipeline(mesh_spec(raw, out, keep_versions=1), dask_client, progress=False)
    users = {"shards/my-notes.parquet": b"user", "shards/README.txt": b"user", "errors/mine.parquet": b"user",
             "versions/draft.json": b"{}", "extra/thing.bin": b"user"}
    for rel, data in users.items():
        os.makedirs(os.path.dirname(out / rel), exist_ok=True)
        (out / rel).write_bytes(data)
    v1 = json.loads((out / "versions" / "000001.json").read_text())
    for k in (3, 2):   # two more versions; keep_versions 1 drops version 1's shards and errors
        run_pipeline(mesh_spec(raw, out, ops={"eigenbasis": {"k": k}}, keep_versions=1), dask_client,
                     progress=False)
    assert list_versions(str(out)) == [3]
    for rel, data in users.items():
        assert (out / rel).read_bytes() == data, rel
    gone = [s["path"] for s in v1["shards"]] + [v1["errors"]]
    assert not any((out / rel).exists() for rel in gone)


def test_a_reader_iterating_while_a_commit_prunes_its_version_keeps_reading(tmp_path, raw, dask_client,
                                                                           monkeypatch):
    monkeypatch.delenv(GRACE_ENV, raising=False)   # the default grace period
    out = tmp_path / "ds"
    run_pipeline(mesh_spec(raw, out, keep_versions=1), dask_client, progress=False)
    ds = open_dataset(str(out))
    stream = GeometryStream(str(out), columns=["pos", "evecs"])
    it = iter(stream)
    first = next(it)
    run_pipeline(mesh_spec(raw, out, ops={"eigenbasis": {"k": 3}}, keep_versions=1), dask_client, progress=False)
    assert list_versions(str(out)) == [2]                     # version 1 is no longer kept ...
    rest = list(it)                                           # ... but its readers go on
    assert len(rest) == len(ds) - 1 and first["evecs"].shape[1] == 4
    assert all(ds[i]["evecs"].shape[1] == 4 for i in range(len(ds)))
    # once the grace period is over, the next commit deletes version 1's files
    retired = json.loads((out / "versions" / "retired" / "000001.json").read_text())
    assert time.time() - retired["retired_at"] < 60
    prune_versions(str(out), keep=1, grace=0)
    from storage.retention import version_files
    current = version_files(json.loads((out / "manifest.json").read_text()))
    assert all(not (out / f).exists() for f in set(retired["files"]) - current)
    assert not (out / "versions" / "retired" / "000001.json").exists()
    assert len(open_dataset(str(out))) == len(ds)
