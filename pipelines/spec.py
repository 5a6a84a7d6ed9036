"""Pipeline specs: YAML -> a validated `PipelineSpec`, rejecting what it doesn't understand.

    name: shapes
    domain: mesh                 # mesh | molecule | graph | sphere
    source: data/raw/shapes      # folder, glob or fsspec URI of raw files
    output: storage/shapes       # dataset URI; a local folder by default
    ops:                         # each adds columns; run in dependency order (shared/DESIGN.md)
      eigenbasis: {k: 64}
    shard_size: 256              # items (files, or records of SDF/XYZ files) per shard: one Dask
                                 # task, one Parquet file; default by domain (SHARD_SIZE_BY_DOMAIN)
    dask_address: null           # an existing scheduler; default: a temporary LocalCluster
    workers: 2                   # worker processes of that LocalCluster; default: one per core
    worker_memory: 4GB           # memory budget per worker; default: the machine's RAM / workers
    keep_versions: 5             # older versions (and shards only they use) are deleted
    row_group_size: 64           # samples per Parquet row group (fewer for samples over 1 MiB)
    compression: lz4             # shard codec: none | snappy | lz4 | zstd | zstd-LEVEL (bench/codec.py)
    labels: {from: folder}       # optional: labels from the sources (pipelines/labels.py)
    share_geometry: true         # store a domain's geometry once for the samples on it (HEALPix
                                 # maps, signals over one graph/mesh); false: a copy per sample
    schedule: {cron: "0 3 * * *"}  # optional, or {interval_seconds: 3600}: used by `gdl serve`

Relative `source` / `output` paths are resolved against the spec file's folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import yaml

from gdl_data.domains import DOMAINS
from gdl_data.errors import SpecError, SpecProblems, did_you_mean, problems_of
from gdl_data.ops import get_op
from gdl_data.ops.registry import params_dict
from gdl_data.params import REQUIRED, Choice, Boolean, Constraint, Integer, Nested, Param, Text, problems_in
from pipelines.schedule import Schedule, parse_schedule
from storage.writer import CODECS, COMPRESSION, parquet_codec

# Items (whole files, or records of multi-record files) per shard when the spec does not say:
# a shard is one task, so it should hold ~0.1-1 s of work, and there should be several per worker.
SHARD_SIZE_BY_DOMAIN = {"molecule": 256, "graph": 16, "mesh": 4, "sphere": 2}


@dataclass(frozen=True)
class Codec(Constraint):
    """A shard codec storage/writer.py knows: none, snappy, lz4, zstd or zstd-LEVEL."""

    def ok(self, value):
        try:
            return isinstance(value, str) and bool(parquet_codec(value))
        except ValueError:
            return False

    def describe(self):
        return f"one of {', '.join(CODECS)} or zstd-LEVEL (1-22)"

    def allowed(self):
        return f"{', '.join(f'`{c}`' for c in CODECS)}, `zstd-LEVEL`"


@dataclass(frozen=True)
class Memory(Constraint):
    """An amount of memory as Dask writes it ("4GB", "512MiB") or a number of bytes."""

    def ok(self, value):
        from dask.utils import parse_bytes   # here: validating a spec should not import Dask
        try:
            return not isinstance(value, bool) and parse_bytes(value) > 0
        except (ValueError, TypeError):
            return False

    def describe(self):
        return "an amount of memory such as 4GB"


# Every key, declared once: validation, messages and README's spec-key table (pipelines/docs.py).
SPEC_PARAMS = {
    "name": Param(REQUIRED, (Text(),), "names the dataset and its Prefect deployment", "shapes"),
    "domain": Param(REQUIRED, (Choice(DOMAINS),), "which readers and op implementations apply", "mesh"),
    "source": Param(REQUIRED, (Text(),), "folder (recursive), glob, file or fsspec URI of the raw files",
                    "data/raw/shapes"),
    "output": Param(REQUIRED, (Text(),), "dataset folder or fsspec URI", "storage/shapes"),
    "ops": Param(None, (Nested("a mapping of op name to parameters"),),
                 "op name -> parameters; run in dependency order (Operators)", "{eigenbasis: {k: 64}}"),
    "shard_size": Param(None, (Integer(1),), "items (files, or records of SDF/XYZ files) per shard, one Dask "
                        "task each; default by domain: molecule 256, graph 16, mesh 4, sphere 2", 256),
    "workers": Param(None, (Integer(1),), "worker processes of the temporary LocalCluster; default: one per core", 2),
    "worker_memory": Param(None, (Memory(),), "memory budget of each worker; default: the machine's memory / workers",
                           "4GB"),
    "row_group_size": Param(64, (Integer(1),), "samples per Parquet row group (fewer for samples over 1 MiB)"),
    "keep_versions": Param(5, (Integer(1),), "versions kept; older ones and shards only they use are deleted"),
    "share_geometry": Param(True, (Boolean(),), "store what depends only on the domain's structure once (HEALPix "
                            "maps of one nside, signals over one graph or mesh) and reference it from each sample"),
    "compression": Param(COMPRESSION, (Codec(),), "shard codec, on the array columns it shrinks by a fifth "
                         "(bench/codec.py); a change rewrites shards from copied columns, computing nothing"),
    "dask_address": Param(None, (Text(),), "an existing Dask scheduler; default: a temporary LocalCluster",
                          "tcp://127.0.0.1:8786"),
    "schedule": Param(None, (Nested("a mapping with cron or interval_seconds"),),
                      "used by `gdl serve` (pipelines/schedule.py)", '{cron: "0 3 * * *"}'),
    "labels": Param(None, (Nested("a mapping such as {from: folder}"),),
                    "labels from the sources: {from: folder} or {table: labels.csv, key: stem}",
                    "{from: folder}"),
}
SPEC_KEYS = tuple(SPEC_PARAMS)


@dataclass(frozen=True)
class OpStep:
    """One op of a spec with its validated parameters."""

    name: str
    params: Any

    @property
    def version(self) -> str:
        return get_op(self.name).version

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "params": params_dict(self.params)}


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    domain: str
    source: str
    output: str
    ops: tuple[OpStep, ...] = ()
    shard_size: int | None = None
    keep_versions: int = 5
    row_group_size: int = 64
    compression: str = COMPRESSION
    dask_address: str | None = None
    workers: int | None = None          # LocalCluster worker processes; default: one per core
    worker_memory: str | None = None    # memory budget per worker, e.g. "4GB"; default: RAM / workers
    schedule: Schedule | None = None
    labels: Mapping[str, Any] | None = None
    share_geometry: bool = True
    spec_path: str | None = field(default=None, compare=False)

    @property
    def items_per_shard(self) -> int:
        return self.shard_size or SHARD_SIZE_BY_DOMAIN[self.domain]

    def layout(self) -> dict[str, Any]:
        """What decides how stored rows are laid out (a change rewrites shards, computes nothing)."""
        return {"row_group_size": self.row_group_size, "compression": self.compression}

    def with_overrides(self, **overrides: Any) -> "PipelineSpec":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def unknown_key_error(key: str, allowed: tuple[str, ...], where: str) -> SpecError:
    return SpecError(f"{where}: unknown key '{key}'; {did_you_mean(key, allowed)}allowed keys: {', '.join(allowed)}")


def key_problems(raw: Any, allowed: tuple[str, ...], where: str) -> list[str]:
    """One line per key of `raw` not in `allowed` (or one line if `raw` is not a mapping)."""
    if not isinstance(raw, Mapping):
        return [f"{where}: expected a mapping of keys ({', '.join(allowed[:6])}, ...), got {type(raw).__name__}"]
    return [str(unknown_key_error(key, allowed, where)) for key in raw if key not in allowed]


def check_keys(raw: Any, allowed: tuple[str, ...], where: str) -> None:
    """`raw` must be a mapping whose keys are all in `allowed`; else SpecProblems naming each."""
    problems = key_problems(raw, allowed, where)
    if problems:
        raise SpecProblems(problems)


def parse_spec(raw: Mapping[str, Any], *, base_dir: str = ".", where: str = "spec") -> PipelineSpec:
    """Validate a spec mapping: every problem at once (SpecProblems), each saying what to write."""
    problems = key_problems(raw, SPEC_KEYS, where)
    if not isinstance(raw, Mapping):
        raise SpecProblems(problems)
    problems += [f"{where}: '{key}' is required, e.g. {key}: {SPEC_PARAMS[key].example}"
                 for key, p in SPEC_PARAMS.items() if p.default is REQUIRED and key not in raw]
    problems += [f"{where}: {p}" for p in problems_in(SPEC_PARAMS, raw)]
    steps = collect_problems(problems, lambda: _parse_ops(raw.get("ops"), raw.get("domain"), where), ())
    schedule = collect_problems(problems, lambda: parse_schedule(raw.get("schedule"), where), None) \
        if isinstance(raw.get("schedule"), Mapping) else None
    if problems:
        raise SpecProblems(problems)
    return PipelineSpec(
        name=raw["name"], domain=raw["domain"],
        source=resolve_path(raw["source"], base_dir), output=resolve_path(raw["output"], base_dir),
        ops=steps, schedule=schedule, labels=raw.get("labels"), dask_address=raw.get("dask_address"),
        **{key: raw.get(key, SPEC_PARAMS[key].default) for key in ("shard_size", "keep_versions", "row_group_size", "compression", "workers",
                                                               "worker_memory", "share_geometry")},
    )


def collect_problems(problems: list[str], parse, fallback=None):
    """Run one sub-parser; its problems join `problems` instead of stopping the others."""
    try:
        return parse()
    except SpecError as exc:
        problems.extend(problems_of(exc))
        return fallback


def _parse_ops(ops_raw: Any, domain: Any, where: str) -> tuple[OpStep, ...]:
    """Every op's parameters (all problems of all ops), in dependency order."""
    if not isinstance(ops_raw, Mapping) or domain not in DOMAINS:
        return ()                       # already reported (not a mapping / bad domain)
    problems, steps = [], []
    for name, params in ops_raw.items():
        if params is not None and not isinstance(params, Mapping):
            problems.append(f"parameters of op '{name}' must be a mapping, e.g. {name}: {{}}"
                            + (" (YAML read it as a boolean)" if isinstance(params, bool) else ""))
            continue
        op = collect_problems(problems, lambda: get_op(name), None)
        step = op and collect_problems(problems, lambda: OpStep(name, op.parse_params(params, domain)), None)
        if step is not None:
            steps.append(step)
    if problems:
        raise SpecProblems([f"{where}: {p}" for p in problems])
    return dependency_order(steps)


def dependency_order(steps: list[OpStep]) -> tuple[OpStep, ...]:
    """The steps with every op after the ops it `depends_on` (from the ops' declarations), spec
    order otherwise: `{neighborhoods: {}, frames: {...}}` runs frames first, so transport is
    measured in the frames the spec asked for, whatever the order the spec lists them in."""
    present = {s.name for s in steps}
    done: list[OpStep] = []
    pending = list(steps)
    while pending:
        names = {x.name for x in done}
        ready = next((s for s in pending if all(d in names or d not in present
                                                for d in get_op(s.name).depends_on)), pending[0])
        done.append(ready)
        pending.remove(ready)
    return tuple(done)


def resolve_path(path: str, base_dir: str) -> str:
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


# libyaml's parser when PyYAML was built with it: the same safe loading (same resolver and
# constructors), 0.08 ms instead of 0.4 ms for a spec here (4 ms in a warm server's fresh child).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_spec_file(path: str, what: str = "spec") -> Any:
    """The YAML content of a spec file; a missing file or bad YAML is a SpecError naming it."""
    try:
        with open(path) as fh:
            return yaml.load(fh, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except FileNotFoundError:
        raise SpecError(f"{path}: no such {what} file") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None


def load_spec(path: str) -> PipelineSpec:
    """Read and validate a spec file; errors name the file."""
    return spec_from(read_spec_file(path), path)


def spec_from(raw: Any, path: str) -> PipelineSpec:
    """The spec `raw` (read from the file at `path`), validated; relative paths are relative to
    the file's folder."""
    spec = parse_spec(raw, base_dir=os.path.dirname(os.path.abspath(path)), where=path)
    return replace(spec, spec_path=os.path.abspath(path))
