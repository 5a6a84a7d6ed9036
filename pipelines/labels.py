"""Labels from the sources, declared in the spec's `labels:` key.

    labels: {from: folder}
        y = index of the file's parent-folder name among all such names (sorted); the class
        names are written to the manifest as `classes`. For data laid out as class/file.ext.
    labels: {table: labels.csv, key: stem}
        a CSV beside the spec (or any path/URI) with a `key` column (`stem`: the file name
        without extension, or `file`: the path relative to `source`) and one numeric column per
        label; each becomes a column of the same name (e.g. `y`).

Labels that live inside the files themselves need no rule: SDF properties become `prop_<name>`
columns and graph node labels `y` (see the readers).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import fsspec
import numpy as np

from gdl_data.errors import SpecError
from gdl_data.params import Choice, check_value

LABEL_KEYS = ("from", "table", "key")


@dataclass(frozen=True)
class LabelRule:
    kind: str                                   # "folder" | "table"
    classes: tuple[str, ...] = ()
    table: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    key: str = "stem"
    source_root: str = ""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": list(self.classes), "key": self.key,
                "table_rows": len(self.table)}

    def _key_of(self, file: str) -> str:
        if self.key == "stem":
            return os.path.basename(file).split(".", 1)[0]
        return os.path.relpath(file, self.source_root) if "://" not in file else file[len(self.source_root):].lstrip("/")

    def columns_for(self, file: str, record: Mapping[str, Any]) -> dict[str, Any]:
        if self.kind == "folder":
            return {"y": np.int64(self.classes.index(_folder(file)))}
        row = self.table.get(self._key_of(file))
        if row is None:
            raise SpecError(f"{file}: no row for '{self._key_of(file)}' in the labels table")
        return {k: np.asarray(v) for k, v in row.items()}


def _folder(file: str) -> str:
    return os.path.basename(os.path.dirname(file.rstrip("/")))


def build_label_rule(raw: Mapping[str, Any] | None, files: Sequence[str], source: str,
                     base_dir: str) -> LabelRule | None:
    """Validate the spec's `labels:` and resolve it against the listed files."""
    if not raw:
        return None
    if not isinstance(raw, Mapping) or any(k not in LABEL_KEYS for k in raw):
        raise SpecError(f"labels: expected {{from: folder}} or {{table: labels.csv, key: stem}}, got {raw!r}")
    if raw.get("from") == "folder":
        return LabelRule("folder", classes=tuple(sorted({_folder(f) for f in files})))
    if "table" in raw:
        key = raw.get("key", "stem")
        check_value("labels.key", key, Choice(("stem", "file")), error=SpecError)
        path = raw["table"] if "://" in raw["table"] or os.path.isabs(raw["table"]) \
            else os.path.join(base_dir, raw["table"])
        with fsspec.open(path, "r") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or key not in rows[0]:
            raise SpecError(f"{path}: the labels table needs a '{key}' column and at least one row")
        table = {}
        for r in rows:
            try:
                table[r[key]] = {k: float(v) for k, v in r.items() if k != key}
            except ValueError as exc:
                raise SpecError(f"{path}: row '{r[key]}' has a non-numeric label ({exc})") from None
        return LabelRule("table", table=table, key=key, source_root=source.rstrip("/"))
    raise SpecError("labels: write {from: folder} or {table: labels.csv, key: stem}")
