"""`gdl inspect`'s human view: vertex-count ranges, inf counts, several components, per-op time,
skipped files and what changed between versions, from a dataset written with storage directly."""
import numpy as np
from rich.console import Console

from flows.report import print_dataset, print_versions
from pipelines.summary import describe_dataset, list_dataset_versions
from storage import commit_version, write_shard


def _row(i, n, evals, dist):
    rng = np.random.default_rng(i)
    return {"sample_id": f"id{i}", "source": f"m{i}.ply", "domain": "mesh",
            "pos": rng.normal(size=(n, 3)).astype(np.float32), "evals": np.asarray(evals, np.float32),
            "geo_dist": np.asarray(dist, np.float32)}


def _text(info, versions=None) -> str:
    console = Console(record=True, width=200)
    print_dataset(info, console) if versions is None else print_versions(versions, console)
    return console.export_text()


def test_inspect_shows_ranges_infs_components_times_and_changes(tmp_path):
    uri = str(tmp_path / "ds")
    one = _row(0, 5, [0, 0.5, 1.2], [[0, 1, 2, 3, 4]])
    two = _row(1, 9, [0, 1e-9, 0.8], [[0, 1, 2, np.inf, np.inf, np.inf, 1, 2, 3]])   # two components
    run = {"files": 3, "skipped_files": 1, "previous_version": None,
           "seconds_by_stage": {"read": 0.5, "eigenbasis": 1.25}}
    ops = [{"name": "eigenbasis", "version": "1", "params": {"k": 3}}]
    commit_version(uri, [write_shard(uri, [one])], [], {"name": "t", "domain": "mesh", "ops": ops, "run": run})
    ops2 = [{"name": "eigenbasis", "version": "1", "params": {"k": 4}}]
    run2 = {**run, "previous_version": 1, "shards_reused": 1, "shards_computed": 1}
    commit_version(uri, [write_shard(uri, [one]), write_shard(uri, [two])], [],
                   {"name": "t", "domain": "mesh", "ops": ops2, "run": run2})
    text = _text(describe_dataset(uri))
    assert "(5–9, 3)" in text                                   # pos: vertex counts 5 to 9
    assert "geo_dist holds 3 inf values" in text
    assert "1 samples have several connected components" in text and "m1.ply (2 components)" in text
    assert "eigenbasis v1 (1.25 s" in text and "1 skipped" in text
    assert "since version 1: op eigenbasis: k 3 -> 4" in text and "samples 1 -> 2" in text
    assert "op eigenbasis: k 3 -> 4" in _text(None, list_dataset_versions(uri))
