"""Assertions the reader tests share: read a file fully, expect samples or one named error."""
from __future__ import annotations

import os

from gdl_data.domains import Sample
from gdl_data.errors import ReadError
from gdl_data.readers import iter_samples


def read_all(path, domain: str) -> list:
    """Every item the reader yields for `path` (iterating must never raise)."""
    return list(iter_samples(os.fspath(path), domain))


def read_samples(path, domain: str) -> list[Sample]:
    """The samples of a file that must read cleanly."""
    items = read_all(path, domain)
    errors = [str(item) for item in items if isinstance(item, ReadError)]
    assert not errors, errors
    assert items, f"{path}: no samples"
    return items


def read_error(path, domain: str, kind: str, *, record: str = "", mentions: tuple[str, ...] = ()) -> ReadError:
    """The one ReadError for `path` (or for `path#record`), of `kind`, whose message names the file.

    `mentions`: fragments the message must contain (what is wrong, said concretely).
    """
    source = os.fspath(path) + (f"#{record}" if record != "" else "")
    errors = [item for item in read_all(path, domain) if isinstance(item, ReadError) and item.source == source]
    assert len(errors) == 1, f"expected one error for {source}, got {[str(e) for e in errors]}"
    error = errors[0]
    assert error.kind == kind, f"{error.kind} != {kind}: {error}"
    assert str(error).startswith(source + ":"), str(error)
    for fragment in mentions:
        assert fragment in error.detail, f"{fragment!r} not in {error.detail!r}"
    return error
