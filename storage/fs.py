"""Filesystem access through fsspec: local folders and remote URIs (s3://, gs://, memory://) alike."""
from __future__ import annotations

import contextlib
import os
import posixpath
import re
import time
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem


def resolve(uri: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, root path) for a dataset URI; plain paths become absolute local paths."""
    uri = os.fspath(uri)
    fs, path = fsspec.core.url_to_fs(uri)
    if isinstance(fs, LocalFileSystem):
        path = os.path.abspath(path)
    return fs, path.rstrip("/")


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes, durable: bool = True) -> None:
    """Write so that readers see the old file or the new one, never a partial one.

    Locally: a temporary file in the same folder, fsync, then rename. On object stores a single
    PUT is already atomic. `durable=False` skips the fsync (≈ 2.5 ms here) for derived files
    whose readers check them and fall back when a crash left them empty or short.
    """
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            # a full disk (or a signal) mid-write: leave nothing behind, then say why
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    else:
        fs.pipe_file(path, data)


# The temporary names write_bytes_atomic gives: "." + the final name + "." + 32 hex digits + ".tmp".
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


def clean_temp_files(uri: str, older_than: float = 0.0) -> list[str]:
    """Delete the temporary files an interrupted write left in a local dataset (a process killed
    between creating and renaming one cannot clean up after itself). Only names of the form
    write_bytes_atomic gives are touched. Call it holding the dataset's lock, so that no writer
    of this dataset is mid-write; `older_than` seconds spares files younger than that.
    Returns the paths deleted."""
    fs, root = resolve(uri)
    if not isinstance(fs, LocalFileSystem) or not os.path.isdir(root):
        return []
    removed, now = [], time.time()
    for folder in (root, *(os.path.join(root, sub) for sub in ("shards", "errors", "versions"))):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            if TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False) \
                    and now - entry.stat(follow_symlinks=False).st_mtime >= older_than:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.path)
    return removed


def read_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    with fs.open(path, "rb") as fh:
        return fh.read()
