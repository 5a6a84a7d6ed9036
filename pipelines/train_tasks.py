"""What a task means: its targets, held-out split, loss, metric and trivial baseline.

| task | target per sample | split | loss | metric | trivial baseline |
| --- | --- | --- | --- | --- | --- |
| node_classification | labels (n,) | nodes of one graph, else graphs | cross-entropy | accuracy | majority class of the training nodes |
| graph_classification | one label | graphs | cross-entropy | accuracy | majority class of the training graphs |
| graph_regression | one number | graphs | MSE on standardised targets | MAE | mean of the training targets |

Splits are stratified by class for classification (every class keeps its share in the test
set, which matters on small sets such as the karate club's 34 nodes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from gdl_data.errors import SpecError
from storage import StoredDataset


@dataclass(frozen=True)
class Task:
    name: str
    node_level: bool
    classification: bool

    @property
    def metric(self) -> str:
        return "accuracy" if self.classification else "mae"

    @property
    def higher_is_better(self) -> bool:
        return self.classification


TASKS = {t.name: t for t in (Task("node_classification", True, True),
                             Task("graph_classification", False, True),
                             Task("graph_regression", False, False))}


def read_targets(dataset: StoredDataset, target: str, task: Task) -> list[np.ndarray]:
    """The target column of every sample (only that column is read), checked against the task."""
    if target not in dataset.columns:
        raise SpecError(f"{dataset.uri}: no column '{target}' to use as target; stored columns: "
                        f"{', '.join(sorted(dataset.columns))}. The preprocessing spec must store it "
                        f"(labels: y from node tables or folder names, prop_<name> from SDF tags)")
    values = []
    for shard in range(len(dataset.manifest["shards"])):
        for row in dataset.decode(dataset.read_shard(shard, [target]), [target]):
            values.append(row.get(target))
    for i, value in enumerate(values):
        if value is None:
            raise SpecError(f"{dataset.uri}: sample {i} has no '{target}'; every sample needs a target")
        value = np.asarray(value)
        if not task.node_level and value.size != 1:
            raise SpecError(f"{dataset.uri}: target '{target}' of sample {i} has shape {value.shape}; "
                            f"{task.name} needs one value per sample (use node_classification for per-node labels)")
        if not task.classification and value.dtype.kind not in "iuf":
            raise SpecError(f"{dataset.uri}: target '{target}' is {value.dtype}, not a number to regress")
    return [np.asarray(v).reshape(-1) if task.node_level else np.asarray(v).reshape(()) for v in values]


def class_names(targets: Sequence[np.ndarray]) -> np.ndarray:
    """Sorted distinct labels (numbers or strings); class i is the i-th of them."""
    return np.unique(np.concatenate([np.atleast_1d(t) for t in targets]))


def encode(target: np.ndarray, classes: np.ndarray | None) -> torch.Tensor:
    """Class indices (long) for classification, float32 values for regression."""
    if classes is None:
        return torch.as_tensor(np.asarray(target, dtype=np.float32))
    return torch.as_tensor(np.searchsorted(classes, target).astype(np.int64))


def stratified_split(labels: np.ndarray | None, count: int, test: float, val: float,
                     seed: int) -> dict[str, np.ndarray]:
    """Indices of 'train', 'val', 'test' (sorted); per class when `labels` are given."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(count)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for members in groups:
        members = rng.permutation(members)
        n_test = max(1, int(round(test * len(members)))) if len(members) > 1 else 0
        n_val = int(round(val * len(members)))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    split = {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}
    if len(split["train"]) == 0 or len(split["test"]) == 0:
        raise SpecError(f"split of {count} items leaves train={len(split['train'])}, test={len(split['test'])}; "
                        f"a dataset this small needs other split fractions")
    return split


def loss(task: Task, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task.classification:
        return torch.nn.functional.cross_entropy(prediction.float(), target)
    return torch.nn.functional.mse_loss(prediction.float().reshape(-1), target.reshape(-1))


def metric(task: Task, prediction: np.ndarray, target: np.ndarray) -> float:
    """Accuracy of argmax predictions, or mean absolute error of values (in the target's units)."""
    if task.classification:
        return float(np.mean(prediction.argmax(-1) == target))
    return float(np.mean(np.abs(prediction.reshape(-1) - target.reshape(-1))))


def trivial_baseline(task: Task, train_target: np.ndarray, test_target: np.ndarray) -> dict[str, Any]:
    """The metric of a constant prediction fitted on the training targets only."""
    if task.classification:
        values, counts = np.unique(train_target, return_counts=True)
        majority = values[np.argmax(counts)]
        return {"kind": "majority class", "prediction": majority.item(),
                task.metric: float(np.mean(test_target == majority))}
    mean = float(np.mean(train_target))
    return {"kind": "training mean", "prediction": mean,
            task.metric: float(np.mean(np.abs(test_target - mean)))}
