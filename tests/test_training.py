"""The training loop: it learns, beats the trivial baseline on a real task, checkpoints, resumes.

Datasets are built here with the storage layer from data nobody here computed (networkx's karate
club with its factions; toy molecules whose target is a count of atoms), holding the canonical
columns the preprocessing ops would store.
"""
import hashlib
import io

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from gdl_data.errors import SpecError
from gdl_data.loader import GeometryDataset, collate_graphs
from gdl_data.models import build_model
from pipelines.train_spec import load_train_spec, parse_train_spec
from pipelines.training import train
from storage import commit_version, write_shard
from training_samples import one_thread, toy_molecules  # noqa: F401 - one_thread: an autouse fixture


def _karate_dataset(uri):
    graph = nx.karate_club_graph()
    adjacency = nx.to_numpy_array(graph, weight=None)
    evals, evecs = np.linalg.eigh(np.diag(adjacency.sum(1)) - adjacency)
    src, dst = np.nonzero(adjacency)
    row = {"sample_id": "karate", "source": "karate.gml", "domain": "graph", "num_nodes": np.int64(34),
           "edge_index": np.stack([src, dst]).astype(np.int64), "mass": np.ones(34, np.float32),
           "evals": evals[:6].astype(np.float32), "evecs": evecs[:, :6].astype(np.float32),
           "y": np.array([graph.nodes[i]["club"] for i in graph.nodes])}   # 'Mr. Hi' / 'Officer'
    commit_version(uri, [write_shard(uri, [row])], [])


def _karate_spec(tmp_path, **overrides):
    raw = {"name": "karate", "dataset": str(tmp_path / "karate"), "model": "gcn", "task": "node_classification",
           "target": "y", "epochs": 30, "output": str(tmp_path / "runs"),
           "hyper": {"lr": 0.02, "hidden": 16, "sign_flip": False}, **overrides}
    return parse_train_spec(raw)


def _molecule_spec(tmp_path, epochs, output="runs"):
    return parse_train_spec({
        "name": "oxygens", "dataset": str(tmp_path / "mols"), "model": "schnet", "task": "graph_regression",
        "target": "prop_oxygens", "epochs": epochs, "output": str(tmp_path / output), "seed": 3,
        "split": {"test": 0.25, "seed": 1},
        "hyper": {"lr": 3e-3, "batch_size": 6, "hidden": 16, "filters": 16, "interactions": 2,
                  "num_rbf": 12, "cutoff": 3.0}})


def test_gcn_beats_the_majority_class_on_karate_club_factions(tmp_path):
    _karate_dataset(str(tmp_path / "karate"))
    result = train(_karate_spec(tmp_path))
    assert result["baseline"]["kind"] == "majority class"
    assert result["baseline"]["prediction"] in ("Mr. Hi", "Officer")
    assert result["baseline_metric"] == 0.5                 # 17 members each: a constant guess is half right
    assert result["model_metric"] >= 0.85, result
    # the checkpoint loads with weights_only=True into a fresh model that scores the reported accuracy
    run = tmp_path / "runs" / result["run"].rsplit("/", 1)[-1]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 30 and state["optimizer"]["state"]
    model = build_model("gcn", 0, 2, node_level=True, hidden=16, sign_flip=False)
    model.load_state_dict(state["model"])
    batch = collate_graphs([GeometryDataset(str(tmp_path / "karate"))[0]])
    predicted = model.eval()(torch.zeros(34, 0), batch).argmax(1).numpy()
    lineage = yaml.safe_load((run / "lineage.json").read_text())
    test_nodes = lineage["split"]["test"]
    factions = np.array([nx.karate_club_graph().nodes[i]["club"] == "Officer" for i in range(34)])
    assert np.mean(predicted[test_nodes] == factions[test_nodes]) == pytest.approx(result["model_metric"])
    # lineage: the exact manifest bytes it trained on
    manifest = (tmp_path / "karate" / "manifest.json").read_bytes()
    assert lineage["manifest_sha256"] == hashlib.sha256(manifest).hexdigest() == result["manifest_sha256"]
    assert lineage["dataset_version"] == 1 and lineage["classes"] == ["Mr. Hi", "Officer"]
    metrics = pq.read_table(run / "metrics.parquet").to_pylist()
    assert [r["epoch"] for r in metrics] == list(range(1, 31))
    assert (run / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_decreases_on_a_learnable_regression(tmp_path):
    toy_molecules(str(tmp_path / "mols"))
    rows = []
    result = train(_molecule_spec(tmp_path, epochs=12), progress=rows.append)
    losses = [r["train_loss"] for r in rows]
    assert len(losses) == 12 and losses[-1] < 0.3 * losses[0], losses
    assert result["metric"] == "mae" and result["baseline"]["kind"] == "training mean"
    assert result["model_metric"] < result["baseline_metric"]


class _Interrupt(Exception):
    pass


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    toy_molecules(str(tmp_path / "mols"))
    full = train(_molecule_spec(tmp_path, epochs=4, output="full"))

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise _Interrupt()
    with pytest.raises(_Interrupt):
        train(_molecule_spec(tmp_path, epochs=4, output="resumed"), progress=stop_after_two)
    seen = []
    resumed = train(_molecule_spec(tmp_path, epochs=4, output="resumed"), progress=seen.append)
    assert [r["epoch"] for r in seen] == [3, 4]               # continued; did not start over
    assert resumed["epochs"] == 4 and resumed["run"].rsplit("/", 1)[-1] == full["run"].rsplit("/", 1)[-1]
    a = torch.load(io.BytesIO(open(f"{full['run']}/checkpoints/last.pt", "rb").read()), weights_only=True)
    b = torch.load(io.BytesIO(open(f"{resumed['run']}/checkpoints/last.pt", "rb").read()), weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert resumed["model_metric"] == full["model_metric"]
    # a finished run re-run trains nothing more, also on a new version that holds the same samples;
    # a version with other samples starts a new run
    toy_molecules(str(tmp_path / "mols"), seed=0)
    again = train(_molecule_spec(tmp_path, epochs=4, output="resumed"), progress=seen.append)
    assert again["dataset_version"] == 2 and again["run"] == resumed["run"] and len(seen) == 2
    toy_molecules(str(tmp_path / "mols"), seed=1)
    fresh = train(_molecule_spec(tmp_path, epochs=1, output="resumed"))
    assert fresh["dataset_version"] == 3 and fresh["run"] != resumed["run"] and fresh["epochs"] == 1


def test_training_specs_say_what_to_write_instead(tmp_path):
    _karate_dataset(str(tmp_path / "karate"))
    with pytest.raises(SpecError, match="did you mean 'epochs'"):
        _karate_spec(tmp_path, epoch=3)
    with pytest.raises(SpecError, match="did you mean 'weight_decay'"):
        _karate_spec(tmp_path, hyper={"weight_decy": 0.1})
    with pytest.raises(SpecError, match="split.test"):
        _karate_spec(tmp_path, split={"test": 1.5})
    with pytest.raises(SpecError, match="add op\\(s\\) gradients"):
        train(_karate_spec(tmp_path, model="diffusion_net", hyper={}, task="graph_classification"))
    with pytest.raises(SpecError, match="no column 'label'"):
        train(_karate_spec(tmp_path, target="label"))
    spec_file = tmp_path / "specs" / "karate.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text(yaml.safe_dump({"name": "k", "dataset": "../karate", "model": "gcn", "epochs": 1,
                                         "task": "node_classification", "target": "y", "output": "../runs"}))
    spec = load_train_spec(str(spec_file))
    assert spec.dataset == str(tmp_path / "karate") and spec.output == str(tmp_path / "runs")


def test_a_kill_between_the_metrics_row_and_the_checkpoint_loses_no_row(tmp_path, monkeypatch):
    """Issue 12: the row is written first; the epoch it describes is re-trained and its row rewritten."""
    from pipelines.train_run import RunFolder
    toy_molecules(str(tmp_path / "mols"))
    real_save = RunFolder.save_checkpoint

    def killed_at_epoch_two(folder, state, *args):
        if state["epoch"] == 2 and state["mid"] is None:
            raise _Interrupt()   # as if SIGKILL landed after metrics.parquet, before last.pt
        real_save(folder, state, *args)
    monkeypatch.setattr(RunFolder, "save_checkpoint", killed_at_epoch_two)
    with pytest.raises(_Interrupt):
        train(_molecule_spec(tmp_path, epochs=4))
    run = next((tmp_path / "runs").glob("oxygens-*"))
    assert [r["epoch"] for r in pq.read_table(run / "metrics.parquet").to_pylist()] == [1, 2]
    monkeypatch.setattr(RunFolder, "save_checkpoint", real_save)
    seen = []
    train(_molecule_spec(tmp_path, epochs=4), progress=seen.append)
    assert [r["epoch"] for r in seen] == [2, 3, 4]
    assert [r["epoch"] for r in pq.read_table(run / "metrics.parquet").to_pylist()] == [1, 2, 3, 4]


def test_a_validation_split_by_default_and_the_splits_stored_with_the_run(tmp_path):
    """Issue 13: val is drawn by default (10 %), evaluated every epoch; lineage keeps the split."""
    _karate_dataset(str(tmp_path / "karate"))
    result = train(_karate_spec(tmp_path, epochs=3))
    assert result["val_metric"] is not None and 0 <= result["val_metric"] <= 1
    lineage = yaml.safe_load(open(f"{result['run']}/lineage.json"))
    split = {k: set(v) for k, v in lineage["split"].items()}
    assert len(split["val"]) == 4 and len(split["test"]) == 6     # per faction of 17: round(1.7), round(3.4)
    assert split["train"] | split["val"] | split["test"] == set(range(34))
    assert not (split["train"] & split["val"] or split["train"] & split["test"] or split["val"] & split["test"])
    toy_molecules(str(tmp_path / "mols"))
    result = train(_molecule_spec(tmp_path, epochs=1))
    lineage = yaml.safe_load(open(f"{result['run']}/lineage.json"))
    ids = lineage["split_sample_ids"]
    assert {k: len(v) for k, v in ids.items()} == {k: len(v) for k, v in lineage["split"].items()}
    assert ids["val"] == [f"s0-m{i}" for i in lineage["split"]["val"]]   # the rows' own ids
