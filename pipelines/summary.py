"""What a run or a dataset looks like to a person: counts, columns, errors grouped by cause."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from storage import StoredDataset


@dataclass
class RunSummary:
    name: str
    output: str
    version: int
    samples: int
    failed: int
    files: int
    skipped_files: int
    wall_seconds: float
    seconds_by_stage: dict[str, float]
    columns: list[str]
    reused_files: int = 0
    op_samples_computed: dict[str, int] = field(default_factory=dict)
    op_samples_reused: dict[str, int] = field(default_factory=dict)
    errors_by_cause: dict[str, int] = field(default_factory=dict)
    published: bool = True          # False: the run changed nothing and published no version

    @classmethod
    def from_manifest(cls, uri: str, manifest: dict[str, Any]) -> "RunSummary":
        run = manifest.get("run", {})
        errors = StoredDataset(uri, manifest["version"]).errors.to_pylist() if manifest["error_count"] else []
        causes = Counter(f"{e['stage']}: {e['error']}" for e in errors)
        return cls(name=manifest.get("name", ""), output=uri, version=manifest["version"],
                   samples=manifest["sample_count"], failed=manifest["error_count"],
                   files=run.get("files", 0), skipped_files=run.get("skipped_files", 0),
                   wall_seconds=run.get("wall_seconds", 0.0),
                   seconds_by_stage=run.get("seconds_by_stage", {}),
                   columns=sorted(manifest["columns"]), errors_by_cause=dict(causes),
                   reused_files=run.get("samples_reused_whole", 0),
                   op_samples_computed=run.get("op_samples_computed", {}),
                   op_samples_reused=run.get("op_samples_reused", {}),
                   published=run.get("published", True))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def one_line(self) -> str:
        version = f"version {self.version}" if self.published else \
            f"nothing changed, no new version (still version {self.version})"
        line = (f"{self.name}: {self.samples} samples ({self.reused_files} reused unchanged), "
                f"{self.failed} failed, {version} at {self.output} ({self.wall_seconds:.1f} s); "
                f"ops computed {self.op_samples_computed or 'none'}, reused {self.op_samples_reused or 'none'}")
        if self.failed:
            line += f"; see the errors table: gdl inspect {self.output}"
        return line

    def markdown(self) -> str:
        stages = "\n".join(f"| {k} | {v:.2f} |" for k, v in sorted(self.seconds_by_stage.items()))
        causes = "\n".join(f"| {k} | {v} |" for k, v in sorted(self.errors_by_cause.items())) or "| none | 0 |"
        return (f"# gdl preprocess: {self.name}\n\n"
                f"- dataset: `{self.output}` version {self.version}\n"
                f"- samples: {self.samples} ({self.reused_files} reused unchanged); failed: {self.failed}; "
                f"files: {self.files} (skipped: {self.skipped_files})\n"
                f"- op samples computed: {self.op_samples_computed}; reused: {self.op_samples_reused}\n"
                f"- wall time: {self.wall_seconds:.1f} s\n\n"
                f"| stage | seconds (summed over workers) |\n|---|---|\n{stages}\n\n"
                f"| failed at: kind | samples |\n|---|---|\n{causes}\n")


def describe_dataset(uri: str, version: int | None = None) -> dict[str, Any]:
    """Everything `gdl inspect` shows: from the manifest and the small tables, plus the `evals`
    column (k numbers per sample) to count connected components; no other array data."""
    from storage import list_versions
    from storage.fs import resolve

    ds = StoredDataset(uri, version)
    m = ds.manifest
    fs, root = resolve(uri)
    # a shard whose every file failed has no Parquet file (path None), only its sidecar
    size = sum(fs.size(f"{root}/{s['path']}") for s in m["shards"] if s["path"])
    return {
        "uri": uri, "name": m.get("name"), "domain": m.get("domain"), "version": m["version"],
        "versions": list_versions(uri), "created": m["created"], "samples": m["sample_count"],
        "failed": m["error_count"], "shards": len(m["shards"]), "bytes_on_disk": size,
        "ops": m.get("ops", []), "columns": m["columns"], "errors_by_cause": errors_by_cause(ds),
        "run": m.get("run", {}), "software": m.get("software", {}),
        "skipped_examples": skipped_examples(m), "several_components": several_components(ds),
        "changes": changes_since_previous(uri, m),
    }


def errors_by_cause(ds: StoredDataset, examples: int = 3) -> dict[str, dict[str, Any]]:
    by_cause: dict[str, dict[str, Any]] = {}
    for e in ds.errors.to_pylist():
        entry = by_cause.setdefault(f"{e['stage']}: {e['error']}", {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < examples:
            entry["examples"].append({"source": e["source"], "message": e["message"]})
    return by_cause


def skipped_examples(manifest: dict[str, Any], limit: int = 5) -> list[str]:
    """Files of the source the domain's readers do not take (the manifest keeps only their
    count): listed from the source as it is now, when it can still be listed."""
    if not manifest.get("run", {}).get("skipped_files") or not manifest.get("source"):
        return []
    from pipelines.sources import list_source_files
    try:
        return list_source_files(manifest["source"], manifest["domain"])[1][:limit]
    except (OSError, ValueError):
        return []


def several_components(ds: StoredDataset, examples: int = 3) -> dict[str, Any] | None:
    """Samples whose Laplacian has more than one zero eigenvalue (one per connected component):
    their low eigenvectors are component indicators, not smooth functions."""
    if "evals" not in ds.columns:
        return None
    found, count = [], 0
    for shard, entry in enumerate(ds.manifest["shards"]):
        if not entry["rows"]:       # every sample of the shard failed: no Parquet file
            continue
        for row in ds.decode(ds.read_shard(shard, ["evals", "source"]), ["evals", "source"]):
            evals = row["evals"]
            scale = float(abs(evals).max()) if len(evals) else 0.0
            zeros = int((abs(evals) <= 1e-5 * scale).sum()) if scale else len(evals)
            if zeros > 1:
                count += 1
                if len(found) < examples:
                    found.append(f"{row['source']} ({zeros} components)")
    return {"count": count, "examples": found}


def changes_since_previous(uri: str, manifest: dict[str, Any]) -> list[str]:
    """What this version changed against the one before it (ops, samples, reuse), one line each."""
    from storage import load_manifest
    run = manifest.get("run", {})
    previous = run.get("previous_version")
    if previous is None:
        return ["first version"]
    try:
        before = load_manifest(uri, previous)
    except (OSError, ValueError, KeyError):
        before = None
    lines = []
    if before is not None:
        old = {o["name"]: o for o in before.get("ops", [])}
        new = {o["name"]: o for o in manifest.get("ops", [])}
        lines += [f"op {n} added" for n in new if n not in old]
        lines += [f"op {n} removed" for n in old if n not in new]
        lines += [f"op {n}: " + _op_change(old[n], new[n]) for n in new if n in old and old[n] != new[n]]
        if (before["sample_count"], before["error_count"]) != (manifest["sample_count"], manifest["error_count"]):
            lines.append(f"samples {before['sample_count']} -> {manifest['sample_count']}, "
                         f"failed {before['error_count']} -> {manifest['error_count']}")
    lines.append(f"shards: {run.get('shards_reused', 0)} reused, {run.get('shards_computed', 0)} computed; "
                 f"op samples computed {run.get('op_samples_computed') or 'none'}")
    return [f"since version {previous}: {line}" for line in lines]


def _op_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = [f"{k} {old['params'].get(k)!r} -> {v!r}" for k, v in new["params"].items()
             if old["params"].get(k) != v]
    if old.get("version") != new.get("version"):
        parts.insert(0, f"code version {old.get('version')} -> {new.get('version')}")
    return ", ".join(parts) or "changed"


def list_dataset_versions(uri: str) -> list[dict[str, Any]]:
    """One row per kept version: number, creation time, samples, failures, ops."""
    from storage import list_versions, load_manifest
    rows = []
    for v in list_versions(uri):
        m = load_manifest(uri, v)
        rows.append({"version": v, "created": m["created"], "samples": m["sample_count"],
                     "failed": m["error_count"], "ops": [o["name"] for o in m.get("ops", [])],
                     "changes": [c.split(": ", 1)[-1] for c in changes_since_previous(uri, m)]})
    return rows
