"""Filesystem access through fsspec: local folders and remote URIs (s3://, gs://, memory://) alike."""
from __future__ import annotations

import os
import posixpath
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


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write so that readers see the old file or the new one, never a partial one.

    Locally: a temporary file in the same folder, fsync, then rename. On object stores a single
    PUT is already atomic.
    """
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def read_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    with fs.open(path, "rb") as fh:
        return fh.read()
