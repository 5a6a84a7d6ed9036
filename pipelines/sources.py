"""Finding raw files (local folders, globs, fsspec URIs) and making them readable locally."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

import fsspec

from gdl_data.readers import extension, is_sidecar, supported_extensions


def list_source_files(source: str, domain: str) -> tuple[list[str], list[str]]:
    """(files a reader of `domain` takes, files skipped for their extension), both sorted.

    `source` is a folder (searched recursively), a glob, or a single file; local or fsspec URI.
    Hidden files are ignored; sidecar files (e.g. a graph's node table) are read with their
    main file, not on their own.
    """
    fs, path = fsspec.core.url_to_fs(source)
    protocol = "" if "://" not in source else source.split("://", 1)[0] + "://"
    if any(ch in path for ch in "*?["):
        found = fs.glob(path)
    elif fs.isdir(path):
        found = fs.find(path)
    elif fs.exists(path):
        found = [path]
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
    """Why `source` gives no `domain` samples, one line each; [] when it has files to read.

    A folder with none of the domain's files but files of another domain is named as such, so
    `domain: molecule` on a folder of meshes says `write domain: mesh`, not "0 samples".
    """
    from gdl_data.domains import DOMAINS
    try:
        files, skipped = list_source_files(source, domain)
    except FileNotFoundError:
        return [f"{where}: source '{source}' does not exist; write the folder, glob, file or URI "
                f"of the raw {domain} files (a relative path is relative to the spec file)"]
    if files:
        return []
    wanted = ", ".join(supported_extensions(domain))
    others = {d: [f for f in skipped if extension(f) in supported_extensions(d)] for d in DOMAINS if d != domain}
    found = {d: fs for d, fs in others.items() if fs}
    if found:
        best = max(found, key=lambda d: len(found[d]))
        kinds = "; ".join(f"{len(fs)} {d} files (e.g. {os.path.basename(fs[0])})" for d, fs in found.items())
        return [f"{where}: source '{source}' holds no {domain} files ({wanted}) but {kinds}; "
                f"write domain: {best}"]
    return [f"{where}: source '{source}' holds no {domain} files ({wanted})"
            + (f"; {len(skipped)} other files, e.g. {os.path.basename(skipped[0])}" if skipped else "; it is empty")]
