"""Readers for real file formats, one module per domain, dispatched by file extension.

`iter_samples(path, domain)` yields one typed domain object per sample, or a `ReadError` for a
sample that is bad: a multi-record file with one bad record still yields its good records. It
never raises for bad input; the pipeline turns each ReadError into a row of the errors table.
"""
from __future__ import annotations

import functools
import hashlib
import os
from typing import Callable, Iterator

from gdl_data.domains import Sample
from gdl_data.errors import ReadError

# Bump when any reader's output changes: cached datasets are then re-read and recomputed.
READERS_VERSION = "2"   # 2: zero-area meshes, undeclared GraphML nodes, float32 range refused
# Signals over one graph or mesh (gdl_data/readers/signals.py): NAME.signals.EXT beside NAME's domain file.
SIGNALS_EXTENSIONS = (".signals.csv", ".signals.parquet", ".signals.npy", ".signals.npz")

Reader = Callable[[str, str], Iterator[Sample | ReadError]]
# Multi-record formats (SDF, multi-frame XYZ) are also split into records, the unit of work and of
# caching: a splitter gives each record's byte span [start, stop) in the file, and a parser turns
# one record's bytes into a Sample (raising ReadError). The planner hashes each span, so editing
# one record of a 100,000-record file recomputes that record only.
Splitter = Callable[[bytes], list[tuple[int, int]]]
RecordParser = Callable[[bytes, str], Sample]
# A format whose records need more than their own bytes (the signals layout: a window of rows
# needs the table's header, the domain file and the windowing parameters) registers a `context`:
# context(path) is loaded once per file read and passed to split(data, ctx) and parse(data,
# source, ctx). Its `companions(path)` are the other files each record depends on: their bytes
# enter every record's key (record_salt) and their sizes and mtimes the file's change check.
Context = Callable[[str], object]
StartTest = Callable[[bytes, int], bool]

# extension -> (domain, module attribute); filled by the domain modules' EXTENSIONS tables.
_READERS: dict[str, dict[str, Reader]] = {}


def register_reader(domain: str, extensions: tuple[str, ...], reader: Reader) -> None:
    for ext in extensions:
        _READERS.setdefault(domain, {})[ext.lower()] = reader


_SIDECARS: dict[str, list[Callable[[str], bool]]] = {}
_RECORDS: dict[str, dict[str, tuple[Splitter, RecordParser, Context | None]]] = {}
_COMPANIONS: dict[str, dict[str, Callable[[str], list[str]]]] = {}
_STARTS: dict[tuple[str, str], StartTest] = {}


def register_records(domain: str, extensions: tuple[str, ...], split: Splitter, parse: RecordParser,
                     context: Context | None = None, starts_at: StartTest | None = None) -> None:
    """Declare a multi-record format: how to split a file's bytes and how to parse one record.

    `starts_at(data, offset)`: whether a record starts at `offset` of `data`, judged from the
    bytes before it; for a format whose splitter is local: where a record starts and ends
    depends only on the bytes from its start to the next record's start (the end of the file
    for the last record), so whole records whose bytes did not change keep their spans, and
    splitting may start at any record's start and stop at any other. Planning then splits a
    changed file again only between its unchanged ends (pipelines/record_blocks.py);
    tests/test_record_blocks.py checks the property per format.
    """
    for ext in extensions:
        _RECORDS.setdefault(domain, {})[ext.lower()] = (split, parse, context)
        if starts_at is not None:
            _STARTS[(domain, ext.lower())] = starts_at


def register_companions(domain: str, extensions: tuple[str, ...], companions: Callable[[str], list[str]]) -> None:
    """Files of these extensions are samples of their bytes *and* of `companions(path)`."""
    for ext in extensions:
        _COMPANIONS.setdefault(domain, {})[ext.lower()] = companions


def companion_files(path: str, domain: str) -> list[str]:
    """The other files whose bytes are part of `path`'s samples (none for most formats)."""
    _load()
    found = _COMPANIONS.get(domain, {}).get(extension(path))
    return sorted(found(path)) if found else []


def record_salt(path: str, domain: str) -> bytes:
    """Prefix of every content key of `path`'s items: the hash of its companions' names and
    bytes (b"" without companions), so editing a companion changes every key."""
    companions = companion_files(path, domain)
    if not companions:
        return b""
    import fsspec
    h = hashlib.sha256()
    for companion in companions:
        with fsspec.open(companion, "rb") as fh:
            h.update(os.path.basename(companion).encode() + b"\x1f" + hashlib.sha256(fh.read()).digest())
    return h.digest()


def record_splitter(path: str, domain: str) -> Splitter | None:
    """The splitter of `path`'s format, or None when the file is read whole (one unit of work)."""
    _load()
    found = _RECORDS.get(domain, {}).get(extension(path))
    if not found:
        return None
    split, _, context = found
    return split if context is None else functools.partial(_split_in_context, split, context, path)


def record_start_test(path: str, domain: str) -> StartTest | None:
    """The `starts_at` test of `path`'s format (register_records), None for a format without
    one or with companions."""
    _load()
    if _COMPANIONS.get(domain, {}).get(extension(path)):
        return None
    return _STARTS.get((domain, extension(path)))


def _split_in_context(split, context: Context, path: str, data: bytes) -> list[tuple[int, int]]:
    return split(data, context(path))


def read_records(path: str, domain: str, spans, source: str | None = None) -> Iterator[Sample | ReadError]:
    """Parse the records `spans` ((index, start, stop) byte ranges) of one file, in that order.

    Reads only those bytes (one seek each), so a worker given records 50,000-50,255 of a large
    SDF file reads ~256 records, not the file. Each record is `source#index`; a bad record yields
    a ReadError and the next ones are still read. `path` is local or an fsspec URI.
    """
    _load()
    import fsspec

    source = source or path
    _, parse, context = _RECORDS[domain][extension(path)]
    if context is not None:
        try:
            parse = functools.partial(parse, ctx=context(path))
        except ReadError as err:      # the table's header or a companion is bad: every record is
            for _ in spans:
                yield err
            return
    try:
        with fsspec.open(path, "rb") as fh:
            for index, start, stop, data in _record_bytes(fh, spans):
                try:
                    yield parse(data, f"{source}#{index}")
                except ReadError as err:
                    yield err
                except Exception as exc:  # noqa: BLE001 - third-party parsers fail in all ways on garbage
                    from gdl_data.readers.validate import parse_failure
                    yield parse_failure(f"{source}#{index}", exc)
    except OSError as exc:
        yield ReadError(source, f"cannot read the file: {exc.strerror or exc}", kind="unreadable")


def _record_bytes(fh, spans) -> Iterator[tuple[int, int, int, bytes]]:
    """(index, start, stop, bytes) of each span; spans that follow one another in the file (a
    shard's run of records) are read together, one read per RECORD_BLOCK bytes, not per record."""
    spans = list(spans)
    i = 0
    while i < len(spans):
        j, first = i + 1, spans[i][1]
        while j < len(spans) and spans[j][1] >= spans[j - 1][2] and spans[j][2] - first <= RECORD_BLOCK:
            j += 1
        fh.seek(first)
        block = fh.read(spans[j - 1][2] - first)
        for index, start, stop in spans[i:j]:
            yield index, start, stop, block[start - first:stop - first]
        i = j


RECORD_BLOCK = 8 << 20


# The libraries a domain's readers import on first use (lazily: validating a spec must not pay
# for RDKit), named so that a worker can import them ahead of its first sample (`preload`).
LIBRARIES = {"molecule": ("rdkit.Chem",), "mesh": ("trimesh",), "sphere": ("healpy",), "graph": ()}


def preload(domain: str) -> None:
    """Import what reading `domain` needs (RDKit for molecules: ≈ 0.15 s of a worker's first
    shard otherwise)."""
    import importlib
    for name in LIBRARIES.get(domain, ()):
        importlib.import_module(name)


def register_sidecar(domain: str, predicate: Callable[[str], bool]) -> None:
    """Files for which `predicate(path)` is true are read with their main file, not on their own."""
    _SIDECARS.setdefault(domain, []).append(predicate)


def is_sidecar(path: str, domain: str) -> bool:
    _load()
    return any(predicate(path) for predicate in _SIDECARS.get(domain, ()))


def extension(path: str) -> str:
    name = os.path.basename(path).lower()
    for compound in (".vtk.gz", ".fits.gz", *SIGNALS_EXTENSIONS):
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
    from gdl_data.readers import graph, mesh, molecule, signals, sphere  # noqa: F401
