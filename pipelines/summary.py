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
                   op_samples_reused=run.get("op_samples_reused", {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def one_line(self) -> str:
        line = (f"{self.name}: {self.samples} samples ({self.reused_files} reused unchanged), "
                f"{self.failed} failed, version {self.version} at {self.output} ({self.wall_seconds:.1f} s); "
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
    """Everything `gdl inspect` shows, from the manifest and the small tables only (no array data)."""
    from storage import list_versions
    from storage.fs import resolve

    ds = StoredDataset(uri, version)
    m = ds.manifest
    fs, root = resolve(uri)
    # a shard whose every file failed has no Parquet file (path None), only its sidecar
    size = sum(fs.size(f"{root}/{s['path']}") for s in m["shards"] if s["path"])
    errors = ds.errors.to_pylist()
    by_cause: dict[str, dict[str, Any]] = {}
    for e in errors:
        entry = by_cause.setdefault(f"{e['stage']}: {e['error']}", {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < 3:
            entry["examples"].append({"source": e["source"], "message": e["message"]})
    return {
        "uri": uri, "name": m.get("name"), "domain": m.get("domain"), "version": m["version"],
        "versions": list_versions(uri), "created": m["created"], "samples": m["sample_count"],
        "failed": m["error_count"], "shards": len(m["shards"]), "bytes_on_disk": size,
        "ops": m.get("ops", []), "columns": m["columns"], "errors_by_cause": by_cause,
        "run": m.get("run", {}), "software": m.get("software", {}),
    }


def list_dataset_versions(uri: str) -> list[dict[str, Any]]:
    """One row per kept version: number, creation time, samples, failures, ops."""
    from storage import list_versions, load_manifest
    rows = []
    for v in list_versions(uri):
        m = load_manifest(uri, v)
        rows.append({"version": v, "created": m["created"], "samples": m["sample_count"],
                     "failed": m["error_count"], "ops": [o["name"] for o in m.get("ops", [])]})
    return rows
