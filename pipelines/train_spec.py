"""Training specs: YAML -> a validated `TrainSpec`, rejecting what it doesn't understand.

    name: karate-factions          # names the run (and the Prefect deployment)
    dataset: ../datasets/graphs    # dataset folder or fsspec URI, relative to this file's folder
    version: null                  # a dataset version; null: the current one when training starts
    model: gcn                     # a registered model: diffusion_net | gcn | deepsphere | schnet
    task: node_classification      # node_classification | graph_classification | graph_regression
    target: y                      # the label column: y, prop_<name>, or another stored column
    features: []                   # node input columns (x, values, pos, ...) or derived (hks)
    split: {seed: 0, test: 0.2, val: 0.1}
    hyper: {lr: 0.01, weight_decay: 0.0005, batch_size: 16, hidden: 32}
    epochs: 200
    seed: 0                        # weights, shuffling and dropout; runs on CPU repeat exactly
    num_workers: 0                 # DataLoader worker processes
    processes: 1                   # data-parallel training processes (DDP: gloo on CPU, NCCL on GPUs)
    checkpoint_every: 0            # also checkpoint every this many steps (0: after each epoch only)
    output: ../runs/karate         # run root: checkpoints, metrics, lineage (folder or fsspec URI)
    schedule: {cron: "0 3 * * *"}  # optional, or {interval_seconds: 3600} (pipelines/schedule.py)
    after: demo-graphs             # optional: run after a successful preprocessing run of this spec

Keys:
- `target`: node classification reads a per-node label array (n,) of one graph or of several
  (split by nodes for one graph, by graphs otherwise); graph classification a label per sample
  (a scalar or a 1-element array, integer or string: classes are the sorted distinct values);
  graph regression a number per sample. The preprocessing spec must store it: `y` from a
  graph file's node attribute, `prop_<name>` from an SDF tag (both read with no extra key),
  `y` from folder names (`labels: {from: folder}`) or any column from a CSV table
  (`labels: {table: labels.csv}`) (pipelines/labels.py).
- `features`: per-node input channels, concatenated; `[]` gives the model no input beyond the
  geometry it reads itself (gcn: Laplacian encodings; schnet: atomic numbers).
- `split`: `test` and `val` fractions of the samples (or nodes), drawn with `seed`, stratified
  by class for classification. `val` is evaluated every epoch (the curves to watch and to stop
  on); `test` too, but it is the split the final held-out metric and the trivial baseline use.
  Both splits are stored with the run (lineage.json: indices and sample ids).
- `hyper`: the model's keyword arguments (gdl_data/models) plus `lr` (1e-3), `weight_decay`
  (0), `batch_size` (16 samples: the batch of all processes together) for Adam.
- `processes`: N data-parallel processes on this machine (pipelines/train_launch.py); the
  result equals one process's with the same `batch_size` up to float rounding.
- `checkpoint_every`: a killed run resumes mid-epoch from its last checkpoint, on the same
  batches and (CPU) to the same weights as an uninterrupted run (pipelines/training.py).
Training resumes in `<output>/<name>-<hash>`, the hash taken over every key that changes the
result (all but `epochs`, `num_workers`, `processes`, `checkpoint_every`, `schedule`, `after`,
`output`) and over the content of
the dataset (its shards' content hashes): re-running continues the same run, raising `epochs`
extends it, a new dataset version with new samples starts a new run, and a version that only
re-committed the same samples resumes the same run (its lineage names the newer version).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping


from gdl_data.errors import SpecError, SpecProblems
from gdl_data.params import REQUIRED, Integer, Number, Param
from gdl_data.models import get_model
from pipelines.schedule import Schedule, parse_schedule
from pipelines.spec import check_keys, collect_problems, key_problems, read_spec_file, resolve_path
from pipelines.train_tasks import TASKS as TASK_DEFINITIONS

TASKS = tuple(TASK_DEFINITIONS)
TRAIN_KEYS = ("name", "dataset", "version", "model", "task", "target", "features", "split", "hyper",
              "epochs", "seed", "num_workers", "processes", "checkpoint_every", "output", "schedule", "after")
SPLIT_KEYS = ("seed", "test", "val")
OPTIMIZER_DEFAULTS = {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 16}
# Keys that never change the numbers of a run, so they stay out of its identity.
# `processes` is one of them: the global batch is the same on any number of processes, so a run
# may resume on another number (pipelines/training.py).
NOT_IN_RUN_KEY = ("epochs", "num_workers", "processes", "checkpoint_every", "schedule", "after", "output",
                  "spec_path")


@dataclass(frozen=True)
class Split:
    seed: int = 0
    test: float = 0.2
    val: float = 0.1


@dataclass(frozen=True)
class TrainSpec:
    name: str
    dataset: str
    model: str
    task: str
    target: str
    output: str
    epochs: int
    version: int | None = None
    features: tuple[str, ...] = ()
    split: Split = Split()
    hyper: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    num_workers: int = 0
    processes: int = 1
    checkpoint_every: int = 0
    schedule: Schedule | None = None
    after: str | None = None
    spec_path: str | None = field(default=None, compare=False)

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.hyper.items() if k not in OPTIMIZER_DEFAULTS}

    def optimizer(self, key: str) -> Any:
        return self.hyper.get(key, OPTIMIZER_DEFAULTS[key])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"] = list(self.features)
        return out

    def run_key(self) -> str:
        """Hash of every setting that changes the trained weights (not epochs, output, schedule)."""
        # `name` stays in: two specs of different names never share a run folder.
        identity = {k: v for k, v in self.to_dict().items() if k not in NOT_IN_RUN_KEY}
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def with_overrides(self, **overrides: Any) -> "TrainSpec":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _number(where: str, key: str, value: Any, *, integer: bool, low: float, example: str,
              low_open: bool = False, high: float | None = None) -> Any:
    # The one numeric check of gdl_data/params.py, with the message form every spec shares.
    constraint = Integer(low, high) if integer else Number(low, high, low_open=low_open)
    problem = Param(REQUIRED, (constraint,), example=example).problem(key, value)
    if problem:
        raise SpecError(f"{where}: {problem}")
    return value


def _parse_split(raw: Any, where: str) -> Split:
    if raw is None:
        return Split()
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: split must be a mapping, e.g. split: {{seed: 0, test: 0.2, val: 0.1}}")
    check_keys(raw, SPLIT_KEYS, f"{where}: split")
    split = Split(seed=_number(where, "split.seed", raw.get("seed", 0), integer=True, low=0, example="0"),
                  test=_number(where, "split.test", raw.get("test", 0.2), integer=False, low=0, low_open=True,
                               high=1, example="0.2"),
                  val=_number(where, "split.val", raw.get("val", 0.1), integer=False, low=0, high=1, example="0.1"))
    if split.test + split.val >= 1:
        raise SpecError(f"{where}: split.test + split.val must leave samples to train on, "
                        f"got {split.test} + {split.val}; e.g. split: {{test: 0.2, val: 0.1}}")
    return split


def _parse_hyper(raw: Any, model: str, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: hyper must be a mapping, e.g. hyper: {{lr: 0.001, batch_size: 16}}")
    allowed = tuple(OPTIMIZER_DEFAULTS) + tuple(get_model(model).hyper_parameters())
    check_keys(raw, allowed, f"{where}: hyper (for model '{model}')")
    hyper = dict(raw)
    if "lr" in hyper:
        _number(where, "hyper.lr", hyper["lr"], integer=False, low=0, low_open=True, example="0.001")
    if "weight_decay" in hyper:
        _number(where, "hyper.weight_decay", hyper["weight_decay"], integer=False, low=0, example="0.0005")
    if "batch_size" in hyper:
        _number(where, "hyper.batch_size", hyper["batch_size"], integer=True, low=1, example="16")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()}


def _string(raw: Mapping[str, Any], key: str, where: str, example: str, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not value or not isinstance(value, str):
        raise SpecError(f"{where}: '{key}' is required and must be a string, e.g. {key}: {example}")
    return value


def parse_train_spec(raw: Mapping[str, Any], *, base_dir: str = ".", where: str = "training spec") -> TrainSpec:
    """Validate a training spec mapping: every problem at once (SpecProblems), each saying
    what to write instead."""
    problems = key_problems(raw, TRAIN_KEYS, where)
    if not isinstance(raw, Mapping):
        raise SpecProblems(problems)

    def get(parse, fallback=None):
        return collect_problems(problems, parse, fallback)

    model = get(lambda: _string(raw, "model", where, "gcn"))
    known_model = model is not None and get(lambda: _known_model(model, where), False)
    fields = dict(
        name=get(lambda: _string(raw, "name", where, "karate-factions")), model=model,
        task=get(lambda: _task(raw, where)), target=get(lambda: _string(raw, "target", where, "y")),
        dataset=get(lambda: resolve_path(_string(raw, "dataset", where, "../datasets/graphs"), base_dir)),
        output=get(lambda: resolve_path(_string(raw, "output", where, "../runs/karate"), base_dir)),
        epochs=get(lambda: _number(where, "epochs", raw.get("epochs"), integer=True, low=1, example="100")),
        version=get(lambda: None if raw.get("version") is None else
                    _number(where, "version", raw["version"], integer=True, low=1, example="3")),
        features=get(lambda: _features(raw, where), ()), split=get(lambda: _parse_split(raw.get("split"), where)),
        hyper=get(lambda: _parse_hyper(raw.get("hyper"), model, where), {}) if known_model else {},
        seed=get(lambda: _number(where, "seed", raw.get("seed", 0), integer=True, low=0, example="0")),
        num_workers=get(lambda: _number(where, "num_workers", raw.get("num_workers", 0), integer=True, low=0,
                                        example="2")),
        processes=get(lambda: _number(where, "processes", raw.get("processes", 1), integer=True, low=1, example="2")),
        checkpoint_every=get(lambda: _number(where, "checkpoint_every", raw.get("checkpoint_every", 0), integer=True,
                                             low=0, example="100")),
        schedule=get(lambda: parse_schedule(raw.get("schedule"), where)),
        after=get(lambda: _string(raw, "after", where, "demo-graphs", required=False)),
    )
    if problems:
        raise SpecProblems(problems)
    return TrainSpec(**fields)


def _known_model(model: str, where: str) -> bool:
    try:
        get_model(model)        # unknown names fail here, with a suggestion
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
    return True


def _task(raw: Mapping[str, Any], where: str) -> str:
    task = _string(raw, "task", where, "graph_classification")
    if task not in TASKS:
        raise SpecError(f"{where}: task '{task}' is not one of {', '.join(TASKS)}")
    return task


def _features(raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    features = raw.get("features") or []
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise SpecError(f"{where}: features must be a list of column names, e.g. features: [x] or features: [hks]")
    return tuple(features)


def load_train_spec(path: str) -> TrainSpec:
    """Read and validate a training spec file; errors name the file."""
    spec = parse_train_spec(read_spec_file(path, "training spec"), base_dir=os.path.dirname(os.path.abspath(path)), where=path)
    return replace(spec, spec_path=os.path.abspath(path))
