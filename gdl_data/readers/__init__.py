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
# Multi-record formats (SDF, multi-frame XYZ) are also split into records, the unit of work and of
# caching: a splitter gives each record's byte span [start, stop) in the file, and a parser turns
# one record's bytes into a Sample (raising ReadError). The planner hashes each span, so editing
# one record of a 100,000-record file recomputes that record only.
Splitter = Callable[[bytes], list[tuple[int, int]]]
RecordParser = Callable[[bytes, str], Sample]

# extension -> (domain, module attribute); filled by the domain modules' EXTENSIONS tables.
_READERS: dict[str, dict[str, Reader]] = {}


def register_reader(domain: str, extensions: tuple[str, ...], reader: Reader) -> None:
    for ext in extensions:
        _READERS.setdefault(domain, {})[ext.lower()] = reader


_SIDECARS: dict[str, Callable[[str], bool]] = {}
_RECORDS: dict[str, dict[str, tuple[Splitter, RecordParser]]] = {}


def register_records(domain: str, extensions: tuple[str, ...], split: Splitter, parse: RecordParser) -> None:
    """Declare a multi-record format: how to split a file's bytes and how to parse one record."""
    for ext in extensions:
        _RECORDS.setdefault(domain, {})[ext.lower()] = (split, parse)


def record_splitter(path: str, domain: str) -> Splitter | None:
    """The splitter of `path`'s format, or None when the file is read whole (one unit of work)."""
    _load()
    found = _RECORDS.get(domain, {}).get(extension(path))
    return found[0] if found else None


def read_records(path: str, domain: str, spans, source: str | None = None) -> Iterator[Sample | ReadError]:
    """Parse the records `spans` ((index, start, stop) byte ranges) of one file, in that order.

    Reads only those bytes (one seek each), so a worker given records 50,000-50,255 of a large
    SDF file reads ~256 records, not the file. Each record is `source#index`; a bad record yields
    a ReadError and the next ones are still read. `path` is local or an fsspec URI.
    """
    _load()
    import fsspec

    source = source or path
    parse = _RECORDS[domain][extension(path)][1]
    try:
        with fsspec.open(path, "rb") as fh:
            for index, start, stop in spans:
                fh.seek(start)
                data = fh.read(stop - start)
                try:
                    yield parse(data, f"{source}#{index}")
                except ReadError as err:
                    yield err
                except Exception as exc:  # noqa: BLE001 - third-party parsers fail in all ways on garbage
                    from gdl_data.readers.validate import parse_failure
                    yield parse_failure(f"{source}#{index}", exc)
    except OSError as exc:
        yield ReadError(source, f"cannot read the file: {exc.strerror or exc}", kind="unreadable")


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
