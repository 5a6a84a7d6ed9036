"""Finding raw files (local folders, globs, fsspec URIs) and making them readable locally."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import time
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from gdl_data.errors import SpecError
from gdl_data.readers import extension, is_sidecar, supported_extensions
from gdl_data.readers.validate import TimeLimitExceeded, file_time_limit, not_a_regular_file, with_time_limit


def list_source_files(source: str, domain: str) -> tuple[list[str], list[str]]:
    """(files a reader of `domain` takes, files skipped for their extension), both sorted.

    `source` is a folder (searched recursively), a glob, or a single file; local or fsspec URI.
    A path that exists is taken literally, even when its name holds glob characters (a folder
    named `glob[1]`); only a path that does not exist is matched as a glob (`*`, `?`, `[...]`).
    Hidden files are ignored; sidecar files (e.g. a graph's node table) are read with their
    main file, not on their own. FIFOs, devices, sockets and dangling links are listed like
    files: reading refuses them, so each becomes a row of the errors table and the run goes on.
    A source with no file of the domain is refused (SpecError): an empty or unmounted folder
    must not publish an empty version.
    """
    files, skipped = find_source_files(source, domain)
    if not files:
        raise SpecError(f"{empty_source(source, domain, skipped)}. Nothing was written; check the source path")
    return files, skipped


def find_source_files(source: str, domain: str) -> tuple[list[str], list[str]]:
    """list_source_files without the refusal of an empty source."""
    fs, path = fsspec.core.url_to_fs(source)
    protocol = "" if "://" not in source else source.split("://", 1)[0] + "://"
    if fs.isdir(path):
        found = fs.find(path)
    elif fs.exists(path) or os.path.islink(path) and not protocol:
        found = [path]
    elif any(ch in path for ch in "*?["):
        found = fs.glob(path)
    else:
        raise FileNotFoundError(f"source '{source}' does not exist")
    wanted = set(supported_extensions(domain))
    files, skipped = [], []
    for p in sorted(found):
        name = os.path.basename(p)
        if name.startswith(".") or is_sidecar(p, domain):
            continue
        (files if extension(p) in wanted else skipped).append(protocol + p if protocol else p)
    return files, skipped


def file_state(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a source file without opening it. A dangling link or a special
    file gets its link's own (lstat) values: reading it later gives the error row."""
    fs, p = fsspec.core.url_to_fs(path)
    if isinstance(fs, LocalFileSystem):
        try:
            info = os.stat(p)
        except FileNotFoundError:
            info = os.lstat(p)
        regular = stat.S_ISREG(info.st_mode)
        return (info.st_size if regular else 0), info.st_mtime_ns
    info = fs.info(p)
    mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    mtime_ns = int(mtime.timestamp() * 1e9) if hasattr(mtime, "timestamp") else int(float(mtime) * 1e9)
    return int(info.get("size") or 0), mtime_ns


def hash_file(path: str) -> str:
    """The content key of a source file: SHA-256 of its bytes (32 hex digits), read within the
    per-file time limit. A file gdl will not read (FIFO, device, dangling link) is not opened:
    its key names what it is, so it is planned, refused by the reader and recorded as an error;
    a file too slow to read gets a key that says so (and its read is refused the same way)."""
    fs, p = fsspec.core.url_to_fs(path)
    if isinstance(fs, LocalFileSystem):
        problem = not_a_regular_file(p)
        if problem:
            return "unreadable-" + hashlib.sha256(problem.encode()).hexdigest()[:20]

    def digest() -> str:
        h = hashlib.sha256()
        with fsspec.open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:32]

    try:
        return with_time_limit(digest, file_time_limit(file_state(path)[0]), f"hashing {path}")
    except TimeLimitExceeded:
        return f"timeout-{time.time_ns()}"   # never equal to a previous key: read again next run


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path for `uri`: the file itself when local, else a temporary download.

    Sidecar files next to a remote file (same stem) are downloaded alongside.
    """
    if "://" not in uri or uri.startswith("file://"):
        yield uri.removeprefix("file://")
        return
    fs, path = fsspec.core.url_to_fs(uri)
    tmp = tempfile.mkdtemp(prefix="gdl-src-")
    try:
        folder = os.path.dirname(path)
        stem = os.path.basename(path).split(".", 1)[0]
        for sibling in fs.ls(folder, detail=False):
            if os.path.basename(sibling).split(".", 1)[0] == stem:
                fs.get(sibling, os.path.join(tmp, os.path.basename(sibling)))
        yield os.path.join(tmp, os.path.basename(path))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def source_problems(source: str, domain: str, where: str) -> list[str]:
    """Why `source` gives no `domain` samples, one line each; [] when it has files to read."""
    try:
        files, skipped = find_source_files(source, domain)
    except FileNotFoundError:
        return [f"{where}: source '{source}' does not exist; write the folder, glob, file or URI "
                f"of the raw {domain} files (a relative path is relative to the spec file)"]
    return [] if files else [f"{where}: {empty_source(source, domain, skipped)}"]


def empty_source(source: str, domain: str, skipped: list[str]) -> str:
    """What is wrong with a source holding no `domain` file. Files of another domain are named
    as such, so `domain: molecule` on a folder of meshes says `write domain: mesh`."""
    from gdl_data.domains import DOMAINS
    wanted = ", ".join(supported_extensions(domain))
    others = {d: [f for f in skipped if extension(f) in supported_extensions(d)] for d in DOMAINS if d != domain}
    found = {d: fs for d, fs in others.items() if fs}
    if found:
        best = max(found, key=lambda d: len(found[d]))
        kinds = "; ".join(f"{len(fs)} {d} files (e.g. {os.path.basename(fs[0])})" for d, fs in found.items())
        return f"source '{source}' holds no {domain} files ({wanted}) but {kinds}; write domain: {best}"
    return (f"source '{source}' holds no {domain} files ({wanted})"
            + (f"; {len(skipped)} other files, e.g. {os.path.basename(skipped[0])}" if skipped else "; it is empty"))


