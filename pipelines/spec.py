"""Pipeline specs: YAML -> a validated `PipelineSpec`, rejecting what it doesn't understand.

    name: shapes
    domain: mesh                 # mesh | molecule | graph | sphere
    source: data/raw/shapes      # folder, glob or fsspec URI of raw files
    output: storage/shapes       # dataset URI; a local folder by default
    ops:                         # in order; each adds columns (shared/DESIGN.md)
      eigenbasis: {k: 64}
    shard_size: 256              # items (files, or records of SDF/XYZ files) per shard: one Dask
                                 # task, one Parquet file; default by domain (SHARD_SIZE_BY_DOMAIN)
    dask_address: null           # an existing scheduler; default: a temporary LocalCluster
    workers: 2                   # worker processes of that LocalCluster; default: one per core
    worker_memory: 4GB           # memory budget per worker; default: the machine's RAM / workers
    keep_versions: 5             # older versions (and shards only they use) are deleted
    row_group_size: 64           # samples per Parquet row group (fewer for samples over 1 MiB)
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
from gdl_data.errors import SpecError, did_you_mean
from gdl_data.ops import get_op
from gdl_data.ops.registry import params_dict
from pipelines.schedule import Schedule, parse_schedule

SPEC_KEYS = ("name", "domain", "source", "output", "ops", "shard_size", "dask_address", "schedule",
             "labels", "keep_versions", "row_group_size", "workers", "worker_memory", "share_geometry")
# Items (whole files, or records of multi-record files) per shard when the spec does not say:
# a shard is one task, so it should hold ~0.1-1 s of work, and there should be several per worker.
SHARD_SIZE_BY_DOMAIN = {"molecule": 256, "graph": 16, "mesh": 4, "sphere": 2}


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
        return {"row_group_size": self.row_group_size}

    def with_overrides(self, **overrides: Any) -> "PipelineSpec":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def unknown_key_error(key: str, allowed: tuple[str, ...], where: str) -> SpecError:
    return SpecError(f"{where}: unknown key '{key}'; {did_you_mean(key, allowed)}allowed keys: {', '.join(allowed)}")


def check_keys(raw: Any, allowed: tuple[str, ...], where: str) -> None:
    """`raw` must be a mapping whose keys are all in `allowed`; else a SpecError saying so."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping of keys ({', '.join(allowed[:6])}, ...), "
                        f"got {type(raw).__name__}")
    for key in raw:
        if key not in allowed:
            raise unknown_key_error(key, allowed, where)


def parse_spec(raw: Mapping[str, Any], *, base_dir: str = ".", where: str = "spec") -> PipelineSpec:
    """Validate a spec mapping. Every message says what to write instead."""
    check_keys(raw, SPEC_KEYS, where)
    for key in ("name", "domain", "source", "output"):
        if not raw.get(key) or not isinstance(raw[key], str):
            raise SpecError(f"{where}: '{key}' is required and must be a string, "
                            f"e.g. {key}: {_EXAMPLES[key]}")
    domain = raw["domain"]
    if domain not in DOMAINS:
        raise SpecError(f"{where}: domain '{domain}' is not one of {', '.join(DOMAINS)}")
    ops_raw = raw.get("ops") or {}
    if not isinstance(ops_raw, Mapping):
        raise SpecError(f"{where}: 'ops' must be a mapping of op name to parameters, "
                        f"e.g. ops: {{eigenbasis: {{k: 64}}}}")
    steps = []
    for name, params in ops_raw.items():
        if params is not None and not isinstance(params, Mapping):
            raise SpecError(f"{where}: parameters of op '{name}' must be a mapping, e.g. {name}: {{}}")
        op = get_op(name)
        steps.append(OpStep(name, op.parse_params(params, domain)))
    shard_size = _positive_int(raw, "shard_size", None, where, "items (files or records) per shard")
    workers = _positive_int(raw, "workers", None, where, "worker processes")
    worker_memory = _memory(raw, where)
    keep_versions = _positive_int(raw, "keep_versions", 5, where, "versions kept")
    row_group_size = _positive_int(raw, "row_group_size", 64, where, "samples per Parquet row group")
    share = raw.get("share_geometry", True)
    if not isinstance(share, bool):
        raise SpecError(f"{where}: share_geometry must be true or false, got {share!r}")
    address = raw.get("dask_address")
    if address is not None and not isinstance(address, str):
        raise SpecError(f"{where}: dask_address must be a string like tcp://127.0.0.1:8786")
    return PipelineSpec(
        name=raw["name"], domain=domain,
        source=resolve_path(raw["source"], base_dir), output=resolve_path(raw["output"], base_dir),
        ops=tuple(steps), shard_size=shard_size, keep_versions=keep_versions, row_group_size=row_group_size,
        dask_address=address, workers=workers, worker_memory=worker_memory,
        schedule=parse_schedule(raw.get("schedule"), where), labels=raw.get("labels"),
        share_geometry=share,
    )


def _positive_int(raw: Mapping[str, Any], key: str, default: int | None, where: str, what: str) -> int | None:
    value = raw.get(key, default)
    if value is None and default is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{where}: {key} must be a positive integer ({what}), got {value!r}; "
                        f"e.g. {key}: {default or 4}")
    return value


def _memory(raw: Mapping[str, Any], where: str) -> str | None:
    value = raw.get("worker_memory")
    if value is None:
        return None
    from dask.utils import parse_bytes
    try:
        if parse_bytes(str(value)) > 0:
            return str(value)
    except ValueError:
        pass
    raise SpecError(f"{where}: worker_memory must be an amount of memory, got {value!r}; "
                    f"e.g. worker_memory: 4GB")


_EXAMPLES = {"name": "shapes", "domain": "mesh", "source": "data/raw/shapes", "output": "storage/shapes"}


def resolve_path(path: str, base_dir: str) -> str:
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


def read_spec_file(path: str, what: str = "spec") -> Any:
    """The YAML content of a spec file; a missing file or bad YAML is a SpecError naming it."""
    try:
        with open(path) as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such {what} file") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None


def load_spec(path: str) -> PipelineSpec:
    """Read and validate a spec file; errors name the file."""
    spec = parse_spec(read_spec_file(path), base_dir=os.path.dirname(os.path.abspath(path)), where=path)
    return replace(spec, spec_path=os.path.abspath(path))
