"""The data side of a training run: which columns to read, targets, split, and the loaders."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader

from gdl_data.errors import SpecError
from gdl_data.loader import GeometryDataset, collate_graphs
from gdl_data.loader.collate import NODE
from gdl_data.loader.sampler import rank_part
from gdl_data.models import get_model
from gdl_data.models.features import columns_for
from pipelines.train_spec import TrainSpec
from pipelines.train_tasks import TASKS, Task, class_names, encode, read_targets, stratified_split
from storage import StoredDataset
from storage.fs import read_bytes
from storage.manifest import version_path

# Which preprocessing op stores a column, for messages that say what to add to the spec.
PRODUCED_BY = {"mass": "eigenbasis", "evals": "eigenbasis", "evecs": "eigenbasis",
               "grad_x": "gradients", "grad_y": "gradients", "normals": "frames", "frames": "frames",
               "edge_index": "neighborhoods", "edge_dist": "neighborhoods"}


def stored_name(dataset: StoredDataset, column: str) -> list[str]:
    """Physical columns of a logical one (a sparse operator X is X_index + X_value)."""
    if column not in dataset.columns and f"{column}_index" in dataset.columns:
        return [f"{column}_index", f"{column}_value"]
    return [column]


def columns_to_read(spec: TrainSpec, dataset: StoredDataset) -> list[str]:
    """The model's geometry, the features' columns and the target; refuses what is missing."""
    wanted = list(get_model(spec.model).requires) + sorted(columns_for(spec.features))
    columns, missing = [], []
    for column in wanted:
        for name in stored_name(dataset, column):
            (columns if name in dataset.columns else missing).append(name)
    if missing:
        ops = sorted({PRODUCED_BY[m] for m in missing if m in PRODUCED_BY})
        hint = f"; add op(s) {', '.join(ops)} to its preprocessing spec" if ops else ""
        raise SpecError(f"{dataset.uri} (version {dataset.version}) lacks column(s) {', '.join(missing)} "
                        f"that model '{spec.model}' / features {list(spec.features)} need{hint}")
    if not any(c in NODE for c in columns):   # collate needs one per-node column to count nodes
        columns.append(next((c for c in NODE if c in dataset.columns), "num_nodes"))
    return list(dict.fromkeys(columns + [spec.target]))


class PrepareSample:
    """Dataset transform: the target column, encoded (class index or float), becomes `y`; and a
    sample with fewer than `spectrum_k` eigenpairs (a mesh of fewer vertices than k) gets zero
    eigenvectors appended, with a repeated finite eigenvalue, so samples batch together and the
    extra pairs contribute nothing. A class rather than a closure so that DataLoader worker
    processes can pickle it.
    """

    def __init__(self, target: str, classes: np.ndarray | None, node_level: bool, spectrum_k: int | None):
        self.target, self.classes, self.node_level, self.spectrum_k = target, classes, node_level, spectrum_k

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample = dict(sample)
        value = sample.pop(self.target)
        value = (value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)).reshape(-1)
        sample["y"] = encode(value if self.node_level else value[0], self.classes)   # (n,) or 0-d
        if self.spectrum_k and "evals" in sample and 0 < len(sample["evals"]) < self.spectrum_k:
            missing = self.spectrum_k - len(sample["evals"])
            sample["evals"] = torch.cat([sample["evals"], sample["evals"][-1:].expand(missing)])
            evecs = sample["evecs"]
            sample["evecs"] = torch.cat([evecs, evecs.new_zeros(evecs.shape[0], missing)], dim=1)
        return sample


@dataclass
class TrainingData:
    task: Task
    dataset: GeometryDataset
    version: int
    manifest_sha256: str
    content_sha256: str                   # of what the samples hold, not when they were committed
    classes: np.ndarray | None
    split: dict[str, np.ndarray]          # sample indices, or node indices when `by_nodes`
    by_nodes: bool                        # node classification of a single graph
    train_targets: np.ndarray
    held_out_targets: dict[str, np.ndarray]

    @property
    def out_channels(self) -> int:
        return len(self.classes) if self.classes is not None else 1

    def items(self, part: str) -> np.ndarray:
        """Dataset indices of `part`: the split's samples, or the one graph split by nodes."""
        return np.zeros(1, np.int64) if self.by_nodes else self.split[part]

    def loader(self, part: str, batches: Iterable[list[int]] | None = None, *, batch_size: int = 16,
               rank: int = 0, world_size: int = 1, num_workers: int = 0, pin_memory: bool = False,
               spawn: bool = False) -> DataLoader | None:
        """Batches of `part`: from `batches` (a batch sampler such as GlobalBatchSampler), else this
        rank's contiguous part of the split in order, `batch_size` at a time.

        Built once per run: with workers they persist across epochs, keeping their decoded row
        groups cached (gdl_data/loader/map_dataset.py) instead of reading them again each epoch.
        `spawn` starts workers fresh instead of forking: needed once CUDA is initialised in this
        process (a forked worker that touches torch's CUDA state fails with "initialization error").
        """
        if len(self.split[part]) == 0:
            return None
        if batches is None:
            items = self.items(part)
            lo, hi = rank_part(len(items), world_size, rank)
            batches = [items[i:min(i + batch_size, hi)].tolist() for i in range(lo, hi, batch_size)]
        # Its own generator: DataLoader draws worker seeds from it, not from torch's global RNG,
        # whose state a mid-epoch checkpoint restores for dropout.
        return DataLoader(self.dataset, batch_sampler=batches, collate_fn=collate_graphs,
                          generator=torch.Generator().manual_seed(0),
                          num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0,
                          multiprocessing_context="spawn" if spawn and num_workers > 0 else None)

    def split_sample_ids(self) -> dict[str, list[str]] | None:
        """The split as sample ids, which outlive row numbers (None when split by nodes)."""
        if self.by_nodes:
            return None
        ids = self.dataset.source.store.scan(["sample_id"]).column("sample_id").to_pylist()
        return {part: [ids[i] for i in items] for part, items in self.split.items()}

    def node_mask(self, part: str, batch: dict) -> torch.Tensor | None:
        """Rows of the model's output that belong to `part` (None: all rows of the batch)."""
        if not self.by_nodes:
            return None
        return torch.as_tensor(self.split[part], device=batch["batch"].device)


def manifest_sha256(dataset: StoredDataset) -> str:
    """SHA-256 of the bytes of the version's manifest (identical to manifest.json when current)."""
    return hashlib.sha256(read_bytes(dataset.fs, version_path(dataset.root, dataset.version))).hexdigest()


def spectrum_k(dataset: StoredDataset) -> int | None:
    """The k the dataset's eigenbasis op was asked for (its manifest), if it ran."""
    for op in dataset.manifest.get("ops") or []:
        if op.get("name") == "eigenbasis":
            return int(op["params"]["k"])
    return None


def content_sha256(dataset: StoredDataset) -> str:
    """Fingerprint of the samples. Shards are named by the hash of their inputs (the pipeline's:
    raw bytes, op parameters and code versions; else the sample ids, themselves hashes of the
    raw bytes), so two versions with the same shards (a preprocessing re-run that changed
    nothing) hold the same data."""
    shards = sorted(s["path"] for s in dataset.manifest["shards"])
    return hashlib.sha256(json.dumps(shards).encode()).hexdigest()


def prepare(spec: TrainSpec) -> TrainingData:
    """Open the (pinned) dataset version, read and encode targets, and draw the split."""
    task = TASKS[spec.task]
    try:
        stored = StoredDataset(spec.dataset, spec.version)
    except FileNotFoundError as exc:
        raise SpecError(f"training spec '{spec.name}': {exc}; run its preprocessing spec first") from None
    columns = columns_to_read(spec, stored)
    targets = read_targets(stored, spec.target, task)
    classes = class_names(targets) if task.classification else None
    by_nodes = task.node_level and len(stored) == 1
    if by_nodes:
        labels = targets[0]
        split = stratified_split(labels, len(labels), spec.split.test, spec.split.val, spec.split.seed)
        item_targets = labels
    else:
        item_targets = np.array([t.reshape(-1)[0] if not task.node_level else 0 for t in targets])
        strata = item_targets if task.classification and not task.node_level else None
        split = stratified_split(strata, len(stored), spec.split.test, spec.split.val, spec.split.seed)
    held_out, train_targets = {}, None
    for part in ("train", "val", "test"):
        if task.node_level and not by_nodes:
            values = np.concatenate([targets[i] for i in split[part]]) if len(split[part]) else np.empty(0)
        else:
            values = np.asarray(item_targets)[split[part]]
        values = np.searchsorted(classes, values) if classes is not None else values.astype(np.float64)
        if part == "train":
            train_targets = values
        else:
            held_out[part] = values
    dataset = GeometryDataset(spec.dataset, stored.version, columns=columns,
                              transform=PrepareSample(spec.target, classes, task.node_level, spectrum_k(stored)))
    return TrainingData(task, dataset, stored.version, manifest_sha256(stored), content_sha256(stored),
                        classes, split, by_nodes, train_targets, held_out)

