"""What every reader shares: reading the raw bytes, checking arrays, and never raising.

Readers raise `ReadError` from deep inside a parse (it is an exception) and `never_raises` turns
it, or any exception a third-party parser throws on bad input, into a yielded `ReadError`.
"""
from __future__ import annotations

import functools
import os
import stat
import threading
import zlib
from typing import Any, Callable, Iterator

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


# Hostile-input limits (issue 12). A gzip member may inflate to at most MAX_INFLATE_RATIO times
# its compressed size (or MIN_INFLATE_LIMIT, whichever is larger): real meshes and maps
# compress 2-20x; a 1 MB file that claims 1 GiB is a decompression bomb, refused at the limit.
MAX_INFLATE_RATIO = 100
MIN_INFLATE_LIMIT = 64 << 20
# Reading a file's bytes must finish within FILE_TIME_BASE seconds plus one second per
# FILE_TIME_RATE bytes (a hung network mount must not hang a run).
FILE_TIME_BASE = float(os.environ.get("GDL_FILE_TIME_LIMIT", "60"))
FILE_TIME_RATE = 5e6


class TimeLimitExceeded(TimeoutError):
    """A call did not finish within its time limit (it goes on in a daemon thread, abandoned)."""


def with_time_limit(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """fn() run in a daemon thread; TimeLimitExceeded after `seconds`. The thread cannot be
    killed: a blocked read stays blocked, but the caller goes on and the process can exit."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"gdl-time-limit:{what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeLimitExceeded(f"{what} did not finish within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def file_time_limit(size: int) -> float:
    return FILE_TIME_BASE + size / FILE_TIME_RATE


def not_a_regular_file(path: str) -> str | None:
    """Why `path` is not a regular file a reader may open ("a FIFO", "a symbolic link to
    '/x', which does not exist"), or None. Opening a FIFO or /dev/zero would block or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a symbolic link to '{os.readlink(path)}', which does not exist"
        return None   # gone: open() says so
    except OSError as exc:
        return f"not accessible ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    target = f" (a symbolic link to '{os.readlink(path)}')" if os.path.islink(path) else ""
    return f"{kind}{target}, not a regular file"


def read_regular_file(path: str, source: str) -> bytes:
    """The bytes of a regular file, within its time limit; ReadError for anything else.

    Opened non-blocking and checked on the open descriptor, so a FIFO or device swapped in
    after a check is still refused, never read.
    """
    problem = not_a_regular_file(path)
    if problem:
        kind = "dangling-link" if "does not exist" in problem else "special-file"
        raise ReadError(source, f"{problem}; gdl reads regular files only", kind=kind)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ReadError(source, f"cannot open the file: {exc.strerror or exc}", kind="unreadable") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ReadError(source, "not a regular file; gdl reads regular files only", kind="special-file")
        try:
            return with_time_limit(fh.read, file_time_limit(info.st_size), f"reading {source}")
        except TimeLimitExceeded as exc:
            raise ReadError(source, f"{exc}: is its storage reachable?", kind="read-timeout") from None
        except OSError as exc:
            raise ReadError(source, f"cannot read the file: {exc.strerror or exc}", kind="unreadable") from None


def gunzip_limited(data: bytes, source: str) -> bytes:
    """Every gzip member of `data` inflated, refusing output over the inflate limit."""
    limit = max(MIN_INFLATE_LIMIT, MAX_INFLATE_RATIO * len(data))
    out, rest = bytearray(), data
    while rest[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(rest, limit + 1 - len(out))
            while True:
                out += chunk
                if len(out) > limit:
                    raise ReadError(source, f"the gzip data inflates past {limit >> 20} MiB "
                                            f"({MAX_INFLATE_RATIO}x its {len(data)} compressed bytes); "
                                            f"refused as a decompression bomb. Store it uncompressed "
                                            f"if it is real", kind="decompression-limit")
                if not inflater.unconsumed_tail:
                    break
                chunk = inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
        except zlib.error as exc:
            raise ReadError(source, f"not a complete gzip stream: {exc}", kind="truncated") from None
        if not inflater.eof:
            raise ReadError(source, "not a complete gzip stream: it ends before its end marker",
                            kind="truncated")
        rest = inflater.unused_data
    if not out:
        raise ReadError(source, "not a gzip stream (no gzip header)", kind="parse-error")
    return bytes(out)


def read_raw(path: str, source: str) -> bytes:
    """The file's bytes, gunzipped (within the inflate limit) when the name ends in .gz.
    Raises ReadError when missing, empty, not a regular file, or too slow to read."""
    data = read_regular_file(path, source)
    if path.lower().endswith(".gz") and data:
        data = gunzip_limited(data, source)
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
    if np.abs(pos).max() <= FLOAT32_MAX:      # one pass for the usual case (NaN compares False)
        return pos
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ReadError(source, f"{int(bad.sum())} {what}(s) have NaN or infinite coordinates "
                                f"(first: {what} {first}, {pos[first].tolist()})",
                        kind="non-finite-coordinates")
    check_float32_range(pos, source, f"{what} coordinates")
    return pos


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(values: np.ndarray, source: str, what: str) -> None:
    """Finite values that would become infinite when stored as float32 (the storage type) are
    refused, not silently stored as inf (a fuzzed '1e308' found this)."""
    big = np.abs(values) > FLOAT32_MAX
    if big.any():
        first = np.flatnonzero(big.reshape(-1))[0]
        raise ReadError(source, f"{int(big.sum())} {what} exceed ±{FLOAT32_MAX:.3g} (first: "
                                f"{values.reshape(-1)[first]:.3g}), which float32 storage cannot hold",
                        kind="out-of-range")


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
    pairs = np.empty((2, 2 * len(src)), dtype=np.int64)
    pairs[0, 0::2] = pairs[1, 1::2] = src
    pairs[1, 0::2] = pairs[0, 1::2] = dst
    loops = src == dst
    if not loops.any():
        return pairs
    keep = np.ones(pairs.shape[1], dtype=bool)
    keep[1::2] = ~loops      # the reverse copy of a self-loop would duplicate it
    return pairs[:, keep]
