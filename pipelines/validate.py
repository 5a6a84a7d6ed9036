"""`gdl validate`: every problem of every spec at once, before Prefect or Dask start.

Reads the spec files (preprocessing or training) and the preprocessing sources' file listing;
writes nothing. `gdl preprocess`, `train` and `serve` run the same check first, so a bad spec
costs a second and prints one line per problem, and leaves no dataset folder behind.
"""
from __future__ import annotations

import os
from typing import Any

from gdl_data.errors import SpecError, problems_of
from pipelines.spec import PipelineSpec, read_spec_file, spec_from


def is_training_spec(raw: Any) -> bool:
    return isinstance(raw, dict) and "model" in raw


def spec_problems(path: str, *, source: str | None = None, check_source: bool = True,
                  kind: str | None = None) -> list[str]:
    """The problems of one spec file (one line each); [] when it is valid.

    source: overrides the spec's `source` (as `gdl preprocess --source` does); check_source:
    also list the source and judge its files against the domain (preprocessing specs); kind:
    "preprocess" or "train" when the command needs that kind of spec.
    """
    return checked_spec(path, source=source, check_source=check_source, kind=kind)[0]


def checked_spec(path: str, *, source: str | None = None, check_source: bool = True,
                 kind: str | None = None) -> tuple[list[str], PipelineSpec | None]:
    """`spec_problems`, and the preprocessing spec it checked (None for a training spec or when
    there are problems): the file is read and parsed once, and what runs is what was checked."""
    try:
        raw = read_spec_file(path)
        training = is_training_spec(raw)
        if kind is not None and training != (kind == "train"):
            other = "gdl train" if training else "gdl preprocess"
            return [f"{path}: this is a {'training' if training else 'preprocessing'} spec; run it with {other}"], None
        if training:
            from pipelines.train_spec import load_train_spec   # imports torch: only when needed
            load_train_spec(path)
            return [], None
        spec = spec_from(raw, path)
    except SpecError as exc:
        return problems_of(exc), None
    if not check_source:
        return [], spec
    problems = _source_and_label_problems(path, source or spec.source, spec.domain, spec.labels)
    return problems, None if problems else spec


def _source_and_label_problems(path: str, source: str, domain: str, labels: Any) -> list[str]:
    from pipelines.labels import build_label_rule
    from pipelines.sources import list_source_files, source_problems
    problems = source_problems(source, domain, path)
    if problems or not labels:
        return problems
    try:   # labels are resolved against the files: {from: folder} classes, a table's rows
        build_label_rule(labels, list_source_files(source, domain)[0], source,
                         os.path.dirname(os.path.abspath(path)))
    except (SpecError, OSError) as exc:
        return [f"{path}: {line}" for line in (problems_of(exc) if isinstance(exc, SpecError) else [str(exc)])]
    return []


def validate_specs(paths: list[str], **options: Any) -> list[str]:
    """Problems of every spec named (folders: their *.yaml / *.yml files)."""
    problems: list[str] = []
    for path in expand(paths):
        problems += spec_problems(path, **options)
    return problems


def expand(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith((".yaml", ".yml")))
        else:
            out.append(p)
    return out
