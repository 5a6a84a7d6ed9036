"""What every reader shares: reading the raw bytes, checking arrays, and never raising.

Readers raise `ReadError` from deep inside a parse (it is an exception) and `never_raises` turns
it, or any exception a third-party parser throws on bad input, into a yielded `ReadError`.
"""
from __future__ import annotations

import functools
import gzip
import zlib
from typing import Callable, Iterator

import numpy as np

from gdl_data.domains import Sample
from gdl_data.errors import ReadError


def never_raises(reader: Callable[[str, str], Iterator[Sample | ReadError]]):
    """Wrap a reader so that a bad file ends its iteration with a ReadError instead of a traceback.

    Samples already yielded stay yielded; what a third-party parser raised becomes kind
    `parse-error` with the exception's own message (which usually says what is wrong).
    """

    @functools.wraps(reader)
    def guarded(path: str, source: str) -> Iterator[Sample | ReadError]:
        try:
            yield from reader(path, source)
        except ReadError as err:
            yield err
        except Exception as exc:  # noqa: BLE001 - parsers of all kinds fail in all ways on garbage
            yield parse_failure(source, exc)

    return guarded


def parse_failure(source: str, exc: Exception, what: str = "cannot parse: ") -> ReadError:
    """A ReadError of kind `parse-error`: `what`, then the first line of a parser's exception."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "(no message)"
    return ReadError(source, f"{what}{type(exc).__name__}: {detail}", kind="parse-error")


def read_raw(path: str, source: str) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz. Raises ReadError when missing or empty."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ReadError(source, f"cannot open the file: {exc.strerror or exc}", kind="unreadable") from None
    if path.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ReadError(source, f"not a complete gzip stream: {exc}", kind="truncated") from None
    if not data or data.isspace():
        raise ReadError(source, "the file is empty", kind="empty")
    return data


def check_positions(pos, source: str, what: str) -> np.ndarray:
    """`pos` as float64 (n, 3) with n > 0 and every coordinate finite, else ReadError.

    `what` names one row in messages ("vertex", "atom").
    """
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ReadError(source, f"{what} coordinates have shape {pos.shape}, expected (n, 3)", kind="parse-error")
    if len(pos) == 0:
        raise ReadError(source, f"no {what}s", kind="empty")
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ReadError(source, f"{int(bad.sum())} {what}(s) have NaN or infinite coordinates "
                                f"(first: {what} {first}, {pos[first].tolist()})",
                        kind="non-finite-coordinates")
    return pos


def check_indices(index, num: int, source: str, row: str, target: str) -> np.ndarray:
    """`index` as int64 with every entry in [0, num), else ReadError naming the first bad row.

    `row` names a row of `index` ("face"), `target` what it points at ("vertices").
    """
    index = np.asarray(index, dtype=np.int64)
    bad = (index < 0) | (index >= num)
    if bad.any():
        rows = bad.reshape(len(index), -1).any(axis=1)
        first = int(np.flatnonzero(rows)[0])
        value = int(index[first][bad[first]].flat[0]) if index.ndim > 1 else int(index[first])
        raise ReadError(source, f"{row} {first} refers to index {value} but there are {num} {target} "
                                f"(valid: 0..{num - 1})", kind="index-out-of-range")
    return index


def both_directions(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 2e) int64 edge index with each undirected edge as (u, v) then (v, u); a self-loop once."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    pairs = np.stack([np.stack([src, dst]), np.stack([dst, src])], axis=2).reshape(2, -1)
    keep = np.ones(pairs.shape[1], dtype=bool)
    keep[1::2] = src != dst  # the reverse copy of a self-loop would duplicate it
    return pairs[:, keep]
