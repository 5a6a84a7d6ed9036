"""Readers for real file formats, one module per domain, dispatched by file extension.

`iter_samples(path, domain)` yields one typed domain object per sample, or a `ReadError` for a
sample that is bad: a multi-record file with one bad record still yields its good records. It
never raises for bad input; the pipeline turns each ReadError into a row of the errors table.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

from gdl_data.domains import Sample
from gdl_data.errors import ReadError

# Bump when any reader's output changes: cached datasets are then re-read and recomputed.
READERS_VERSION = "2"   # 2: zero-area meshes, undeclared GraphML nodes, float32 range refused

Reader = Callable[[str, str], Iterator[Sample | ReadError]]

# extension -> (domain, module attribute); filled by the domain modules' EXTENSIONS tables.
_READERS: dict[str, dict[str, Reader]] = {}


def register_reader(domain: str, extensions: tuple[str, ...], reader: Reader) -> None:
    for ext in extensions:
        _READERS.setdefault(domain, {})[ext.lower()] = reader


_SIDECARS: dict[str, Callable[[str], bool]] = {}


def register_sidecar(domain: str, predicate: Callable[[str], bool]) -> None:
    """Files for which `predicate(path)` is true are read with their main file, not on their own."""
    _SIDECARS[domain] = predicate


def is_sidecar(path: str, domain: str) -> bool:
    _load()
    predicate = _SIDECARS.get(domain)
    return bool(predicate and predicate(path))


def extension(path: str) -> str:
    name = os.path.basename(path).lower()
    for compound in (".vtk.gz", ".fits.gz"):
        if name.endswith(compound):
            return compound
    return os.path.splitext(name)[1]


def supported_extensions(domain: str) -> list[str]:
    _load()
    return sorted(_READERS.get(domain, {}))


def iter_samples(path: str, domain: str, source: str | None = None) -> Iterator[Sample | ReadError]:
    """Read every sample of one local file. `source` is the name reported (defaults to `path`)."""
    _load()
    source = source or path
    reader = _READERS.get(domain, {}).get(extension(path))
    if reader is None:
        yield ReadError(source, f"'{extension(path) or '(no extension)'}' is not a {domain} format "
                                f"gdl-data reads; supported: {', '.join(supported_extensions(domain))}",
                        kind="unsupported-format")
        return
    yield from reader(path, source)


def _load() -> None:
    # Importing the domain modules registers their readers.
    from gdl_data.readers import graph, mesh, molecule, sphere  # noqa: F401
