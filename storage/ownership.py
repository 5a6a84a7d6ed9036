"""Which folders gdl may write into: a new or empty one, or a dataset it created itself.

The first thing gdl writes into an output is a marker, `_gdl_dataset.json`, holding the
dataset's `name` and `domain`. A later run writes there only when its spec has the same name
and domain. Anything else is refused before a byte is written: a folder holding files gdl did
not write, another spec's dataset, or an output inside the source (or the source inside the
output), where gdl would read its own Parquet files as raw input. Datasets written before the
marker existed are recognised by their manifest's name and domain, and given a marker.
"""
from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import time

from fsspec.implementations.local import LocalFileSystem

from storage.fs import join, read_bytes, resolve, write_bytes_atomic
from storage.manifest import MANIFEST, latest_intact_version

MARKER = "_gdl_dataset.json"
LOCK_NAME = "_lock.json"      # storage/lock.py's file: a writer's own, not the user's
_WHAT_TO_DO = "Choose a new or empty folder as output (or pass --output PATH)"


class OwnershipError(RuntimeError):
    """gdl refuses to write into this output: the message says why and what to write instead."""


def claim_output(uri: str, name: str, domain: str, source: str | None = None) -> None:
    """Make sure gdl may write dataset `name` (`domain`) at `uri`, writing the marker if new.

    Raises OwnershipError when `uri` holds files gdl did not write, holds another spec's
    dataset, or overlaps `source`. Call it before anything is written into `uri`, except
    the writer's lock.
    """
    if source is not None:
        check_not_nested(source, uri)
    owner = read_marker(uri)
    if owner is None:
        owner = _legacy_owner(uri) or _new_owner(uri, name, domain)
    if (owner.get("name"), owner.get("domain")) != (name, domain):
        raise OwnershipError(
            f"{uri} holds the dataset '{owner.get('name')}' (domain {owner.get('domain')}), not "
            f"'{name}' ({domain}); gdl adds versions only to a dataset of the same name and domain. "
            f"{_WHAT_TO_DO}, or rename the spec to '{owner.get('name')}'")


def read_marker(uri: str) -> dict | None:
    """The marker's content, None when there is none (a corrupt marker is refused)."""
    fs, root = resolve(uri)
    path = join(root, MARKER)
    if not fs.exists(path):
        return None
    try:
        owner = json.loads(read_bytes(fs, path))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OwnershipError(f"{path} is not gdl's marker (not JSON). {_WHAT_TO_DO}") from None
    if not isinstance(owner, dict):
        raise OwnershipError(f"{path} is not gdl's marker. {_WHAT_TO_DO}")
    return owner


def is_gdl_dataset(uri: str) -> bool:
    """True when `uri` carries gdl's marker (so crash recovery may tidy it)."""
    try:
        return read_marker(uri) is not None
    except OwnershipError:
        return False


def _legacy_owner(uri: str) -> dict | None:
    """A dataset gdl wrote before markers existed: its manifest names it. Marked now."""
    fs, root = resolve(uri)
    if not fs.exists(join(root, MANIFEST)):
        return None
    manifest = latest_intact_version(uri)
    if manifest is None or "name" not in manifest:
        return None
    owner = {"name": manifest["name"], "domain": manifest.get("domain")}
    write_bytes_atomic(fs, join(root, MARKER), json.dumps({**owner, "created": manifest.get("created")}).encode())
    return owner


def _new_owner(uri: str, name: str, domain: str) -> dict:
    """Mark a new or empty output as this dataset's; refuse a folder holding anything else."""
    fs, root = resolve(uri)
    if fs.exists(root):
        if not fs.isdir(root):
            raise OwnershipError(f"output {uri} is a file, not a folder. {_WHAT_TO_DO}")
        foreign = sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(root, detail=False))
        foreign = [n for n in foreign if n not in (LOCK_NAME, MARKER)]
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise OwnershipError(f"output {uri} already holds files gdl did not write ({shown}); gdl "
                                 f"writes only into a new or empty folder or a dataset it created. "
                                 f"{_WHAT_TO_DO}")
    owner = {"name": name, "domain": domain, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    data = json.dumps(owner).encode()
    if isinstance(fs, LocalFileSystem):
        os.makedirs(root, exist_ok=True)
        try:   # exclusive: two runs claiming one empty folder at once agree on one owner
            fd = os.open(join(root, MARKER), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return read_marker(uri) or owner
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    else:
        write_bytes_atomic(fs, join(root, MARKER), data)
    return owner


def _glob_split(path: str) -> tuple[str, list[str]]:
    """(the folder before the first wildcard, the pattern's components after it); a path that
    exists is literal (pipelines/sources.py takes it so), so its pattern is empty."""
    if os.path.exists(path) or not any(ch in path for ch in "*?["):
        return path, []
    parts = path.split("/")
    first = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
    return "/".join(parts[:first]) or "/", parts[first:]


def _glob_reaches(pattern: list[str], parts: list[str]) -> bool:
    """Whether files inside the folder `parts` (relative to the glob's root) can match `pattern`."""
    for i, part in enumerate(parts):
        if i < len(pattern) and pattern[i] == "**":
            return True
        if i >= len(pattern) - 1 or not fnmatch.fnmatchcase(part, pattern[i]):
            return False
    return True


def _inside(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/")


def check_not_nested(source: str, output: str) -> None:
    """Refuse an output that is the source, inside it (where the source's glob reaches), or
    holds it. Symbolic links are resolved for local paths."""
    fs_s, src = resolve(source)
    fs_o, out = resolve(output)
    if type(fs_s) is not type(fs_o):
        return
    src, pattern = _glob_split(src)
    if isinstance(fs_s, LocalFileSystem):
        src, out = os.path.realpath(src), os.path.realpath(out)
    inside = _inside(out, src) and (not pattern or _glob_reaches(pattern, out[len(src):].strip("/").split("/")))
    if inside or _inside(src, out):
        where = "is the source" if out == src else ("is inside the source" if inside else "holds the source")
        raise OwnershipError(f"output {output} {where} {source}: gdl would read its own files as raw "
                             f"input and write among yours. Put the output outside the source folder, "
                             f"e.g. output: {posixpath.dirname(src.rstrip('/')) or '/'}/"
                             f"{posixpath.basename(src.rstrip('/')) or 'data'}-dataset")
