"""Issue 4: re-runs compute only what changed, versions are kept and pruned, one writer at a time.

Meshes here are small perturbed icospheres written as PLY by trimesh: the subject is the cache,
not the readers (tests/test_readers_*.py read real files).
"""
import json
import os

import numpy as np
import pytest
import trimesh

from gdl_data import open_dataset
from pipelines.execute import run_pipeline
from pipelines.spec import parse_spec
from storage import DatasetLock, DatasetLocked, list_versions

OPS = {"eigenbasis": {"k": 6}, "frames": {}, "neighborhoods": {}}


def _write_mesh(path, seed):
    mesh = trimesh.creation.icosphere(subdivisions=1)
    rng = np.random.default_rng(seed)
    mesh.vertices = mesh.vertices * (1 + 0.05 * rng.random((len(mesh.vertices), 1)))
    mesh.export(path)


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(6):
        _write_mesh(folder / f"m{i}.ply", i)
    return folder


def _spec(tmp_path, raw, ops=OPS, out="ds", **extra):
    return parse_spec({"name": "t", "domain": "mesh", "source": str(raw), "output": str(tmp_path / out),
                       "ops": ops, "shard_size": 2, **extra})


def _content(uri):
    """Sample ids and the bytes of every array, in dataset order."""
    return [(s["sample_id"], {k: v.tobytes() for k, v in s.items() if isinstance(v, np.ndarray)})
            for s in open_dataset(uri)]


def test_rerun_with_nothing_changed_computes_nothing(tmp_path, raw, dask_client):
    spec = _spec(tmp_path, raw)
    first = run_pipeline(spec, dask_client, progress=False)
    assert first["run"]["op_samples_computed"] == {"eigenbasis": 6, "frames": 6, "neighborhoods": 6}
    before = _content(spec.output)
    second = run_pipeline(spec, dask_client, progress=False)
    assert second["run"]["op_samples_computed"] == {}
    assert second["run"]["shards_reused"] == 3 and second["run"]["shards_computed"] == 0
    # Nothing changed: no new version (issue 13); the run is logged under runs/ instead.
    assert _content(spec.output) == before and second["version"] == 1
    assert second["run"]["published"] is False and list_versions(spec.output) == [1]
    assert len(os.listdir(spec.output + "/runs")) == 1


def test_edited_file_recomputes_only_that_sample(tmp_path, raw, dask_client):
    spec = _spec(tmp_path, raw)
    run_pipeline(spec, dask_client, progress=False)
    _write_mesh(raw / "m3.ply", 99)
    manifest = run_pipeline(spec, dask_client, progress=False)
    run = manifest["run"]
    assert run["op_samples_computed"] == {"eigenbasis": 1, "frames": 1, "neighborhoods": 1}
    assert run["shards_reused"] == 2  # the two shards without m3 are untouched
    # Equal to computing the edited folder from scratch.
    fresh = _spec(tmp_path, raw, out="fresh")
    run_pipeline(fresh, dask_client, progress=False)
    assert _content(spec.output) == _content(fresh.output)


def test_changed_parameter_recomputes_only_that_op_and_matches_a_fresh_run(tmp_path, raw, dask_client):
    run_pipeline(_spec(tmp_path, raw), dask_client, progress=False)
    ops = {**OPS, "eigenbasis": {"k": 4}}
    manifest = run_pipeline(_spec(tmp_path, raw, ops), dask_client, progress=False)
    assert manifest["run"]["op_samples_computed"] == {"eigenbasis": 6}
    assert manifest["run"]["op_samples_reused"] == {"frames": 6, "neighborhoods": 6}
    fresh = _spec(tmp_path, raw, ops, out="fresh")
    run_pipeline(fresh, dask_client, progress=False)
    assert _content(str(tmp_path / "ds")) == _content(fresh.output)
    assert open_dataset(fresh.output)[0]["evecs"].shape[1] == 4


def test_dependent_op_recomputes_when_its_dependency_changes(tmp_path, raw, dask_client):
    run_pipeline(_spec(tmp_path, raw), dask_client, progress=False)
    ops = {**OPS, "frames": {"weighting": "angle"}}
    manifest = run_pipeline(_spec(tmp_path, raw, ops), dask_client, progress=False)
    # neighborhoods reads the frames (transport, logmap): it must follow them.
    assert manifest["run"]["op_samples_computed"] == {"frames": 6, "neighborhoods": 6}
    assert manifest["run"]["op_samples_reused"] == {"eigenbasis": 6}


def test_removed_file_disappears_and_new_file_is_added(tmp_path, raw, dask_client):
    spec = _spec(tmp_path, raw)
    run_pipeline(spec, dask_client, progress=False)
    os.remove(raw / "m0.ply")
    _write_mesh(raw / "m9.ply", 9)
    run_pipeline(spec, dask_client, progress=False)
    sources = sorted(os.path.basename(s["source"]) for s in open_dataset(spec.output))
    assert sources == ["m1.ply", "m2.ply", "m3.ply", "m4.ply", "m5.ply", "m9.ply"]


def test_errors_persist_and_are_retried_only_when_asked(tmp_path, raw, dask_client):
    (raw / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\n\x00garbage")
    spec = _spec(tmp_path, raw)
    first = run_pipeline(spec, dask_client, progress=False)
    assert first["sample_count"] == 6 and first["error_count"] == 1
    second = run_pipeline(spec, dask_client, progress=False)
    assert second["error_count"] == 1 and second["run"]["shards_computed"] == 0
    errors = open_dataset(spec.output).errors.to_pylist()
    assert errors[0]["source"].endswith("broken.ply") and errors[0]["stage"] == "read"
    third = run_pipeline(spec, dask_client, retry_errors=True, progress=False)
    assert third["error_count"] == 1 and third["run"]["shards_computed"] == 1


def test_versions_are_kept_then_pruned(tmp_path, raw, dask_client, monkeypatch):
    monkeypatch.setenv("GDL_PRUNE_GRACE_SECONDS", "0")   # no grace period for readers (storage/retention.py)
    spec = _spec(tmp_path, raw, keep_versions=2)
    for k in (6, 5, 4):
        spec = _spec(tmp_path, raw, {**OPS, "eigenbasis": {"k": k}}, keep_versions=2)
        run_pipeline(spec, dask_client, progress=False)
    assert list_versions(spec.output) == [2, 3]
    assert open_dataset(spec.output, version=2)[0]["evecs"].shape[1] == 5
    assert open_dataset(spec.output)[0]["evecs"].shape[1] == 4
    referenced = set()
    for v in (2, 3):
        m = json.loads((tmp_path / "ds" / "versions" / f"{v:06d}.json").read_text())
        referenced |= {s["path"] for s in m["shards"]}
    on_disk = {f"shards/{f}" for f in os.listdir(tmp_path / "ds" / "shards") if f.endswith(".parquet")
               and not f.endswith(".files.parquet")}
    assert on_disk == referenced
    # the items index (storage/items_index.py) goes with its version
    assert sorted(os.listdir(tmp_path / "ds" / "items")) == ["000002.arrow", "000003.arrow"]


def test_a_second_writer_fails_fast_naming_the_holder(tmp_path, raw, dask_client):
    spec = _spec(tmp_path, raw)
    with DatasetLock(spec.output):
        with pytest.raises(DatasetLocked, match=f"process {os.getpid()}"):
            run_pipeline(spec, dask_client, progress=False)


def test_a_stale_lock_is_recovered(tmp_path, raw, dask_client):
    spec = _spec(tmp_path, raw)
    os.makedirs(spec.output)
    dead = {"pid": 2 ** 22 + 12345, "host": os.uname().nodename, "token": "x", "since": "then"}
    (tmp_path / "ds" / "_lock.json").write_text(json.dumps(dead))
    lock = DatasetLock(spec.output).acquire()
    assert lock.recovered["pid"] == dead["pid"]
    lock.release()
    assert run_pipeline(spec, dask_client, progress=False)["sample_count"] == 6


def test_row_group_size_is_configurable_and_a_change_copies_instead_of_computing(tmp_path, raw, dask_client):
    import pyarrow.parquet as pq
    spec = _spec(tmp_path, raw)
    run_pipeline(spec, dask_client, progress=False)
    before = _content(spec.output)
    manifest = run_pipeline(_spec(tmp_path, raw, row_group_size=1), dask_client, progress=False)
    assert manifest["run"]["op_samples_computed"] == {} and manifest["run"]["shards_reused"] == 0
    assert manifest["run"]["op_samples_reused"] == {"eigenbasis": 6, "frames": 6, "neighborhoods": 6}
    shard = pq.ParquetFile(tmp_path / "ds" / manifest["shards"][0]["path"])
    assert shard.metadata.num_row_groups == shard.metadata.num_rows == 2
    assert _content(spec.output) == before  # same samples, same bytes, new layout


def test_a_compression_change_rewrites_the_shards_from_copied_columns(tmp_path, raw, dask_client):
    import pyarrow.parquet as pq
    spec = _spec(tmp_path, raw)
    first = run_pipeline(spec, dask_client, progress=False)
    before = _content(spec.output)
    manifest = run_pipeline(_spec(tmp_path, raw, compression="none"), dask_client, progress=False)
    assert (first["layout"]["compression"], manifest["layout"]["compression"]) == ("lz4", "none")
    assert manifest["run"]["op_samples_computed"] == {} and manifest["run"]["shards_reused"] == 0
    meta = pq.read_metadata(tmp_path / "ds" / manifest["shards"][0]["path"])
    assert {meta.row_group(0).column(c).compression for c in range(meta.num_columns)} == {"UNCOMPRESSED"}
    assert sum(s["bytes"] for s in manifest["shards"]) > sum(s["bytes"] for s in first["shards"])
    assert _content(spec.output) == before  # same samples, same values
