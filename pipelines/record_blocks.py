"""Splitting and hashing a changed multi-record file again, without redoing its unchanged records.

A record's key is the SHA-256 of its bytes (pipelines/cache.py). Appending one molecule to a
6,000-record SDF used to mean splitting the whole file again (5 ms) and hashing every record
(6.5 ms, mostly per-call cost), in a re-run whose whole budget is ~80 ms. Here a file's records
are grouped in *blocks* of BLOCK_RECORDS consecutive records; a block's bytes run from its first
record's start to the next block's first start (from byte 0 for the first block, to the end of
the file for the last), so blocks tile the file, and its digest is the SHA-256 of those bytes.
The items index keeps each file version's spans, keys and block digests (storage/items_index.py).

For the next version of the file, when its format can tell where a record starts (a local
splitter: gdl_data/readers/__init__.py `register_records`):
* blocks whose bytes are unchanged at the same offsets, from the start (all but the last:
  appended bytes may extend the last record), keep their spans and keys without being split;
* so do blocks whose bytes are unchanged at the end of the file, shifted by its change in size,
  from one that still starts where a record starts;
* only the middle between them is split (one block after an append or an edit).
For every format, an old block found again in the split part, shifted by the change in size, on
the same relative record spans, gives its keys; every other record is hashed on its own.
The digest check stands for hashing each record: equal block bytes mean equal record bytes. The
blocks are fixed by record numbers, so the digests, and the file key made of them, depend on the
bytes only, never on the file's history.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

BLOCK_RECORDS = 64
Splitter = Callable[[bytes], list[tuple[int, int]]]


@dataclass(frozen=True)
class Records:
    """One file version's records: spans [starts, stops) in bytes, keys (32 hex digits each),
    and the digest of each block of BLOCK_RECORDS records."""

    size: int
    starts: np.ndarray          # int64 (n,)
    stops: np.ndarray           # int64 (n,)
    keys: list[str]
    digests: list[str]          # ceil(n / BLOCK_RECORDS)

    @property
    def file_key(self) -> str:
        """The file's content key: the hash of its block digests (a hash list over its bytes)."""
        return hashlib.sha256("".join(self.digests).encode()).hexdigest()[:32]


def block_ranges(starts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) byte range of each block: from its first record's start (0 for the first block)
    to the next block's first start (the file's size for the last)."""
    lo = starts[::BLOCK_RECORDS].astype(np.int64)
    if len(lo):
        lo[0] = 0
    return lo, np.append(lo[1:], size)


def digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def split_records(data: bytes, split: Splitter, old: Records | None = None,
                  starts_at: Callable[[bytes, int], bool] | None = None) -> Records | None:
    """The records of `data` (None when it has none), their keys and block digests. With `old`,
    the previous version's records, blocks found unchanged are not hashed record by record; for
    a format that can tell where a record starts (`starts_at(data, offset)`: its splitter is
    local, gdl_data/readers/__init__.py `register_records`), the unchanged blocks at the start
    and at the end of the file are not split again either: only the middle between them is."""
    if old is None:
        return _in_middle(memoryview(data), split(data), 0, None)
    view, shift = memoryview(data), len(data) - old.size
    head, tail = _unchanged_ends(data, old, starts_at) if starts_at else (0, len(old.digests))
    lo, hi = block_ranges(old.starts, old.size)
    a = int(lo[head]) if head else 0
    b = int(lo[tail]) + shift if tail < len(old.digests) else len(data)
    spans = split(data[a:b]) if (a, b) != (0, len(data)) else split(data)
    return _in_middle(view, spans, a, (old, head, tail))


def _in_middle(view: memoryview, middle: list[tuple[int, int]], at: int,
               around: tuple[Records, int, int] | None) -> Records | None:
    """The file's records: the `middle` spans (split from byte `at`) between the old records of
    blocks [0, head) and [tail, ...) of `around` = (old, head, tail), those shifted by the
    change in size; keys and digests of old blocks reused where their bytes are found again."""
    spans = np.array(middle, dtype=np.int64).reshape(-1, 2) + at
    old, head, tail = around or (Records(0, np.zeros(0, np.int64), np.zeros(0, np.int64), [], []), 0, 0)
    first, after, shift = head * BLOCK_RECORDS, min(tail * BLOCK_RECORDS, len(old.keys)), len(view) - old.size
    if not first and not len(spans) and after == len(old.keys):
        return None
    shifted, reused = _shifted_blocks(view, spans, old, range(head, tail)) if around else ({}, {})
    keys = old.keys[:first] + [shifted.get(i) or digest(view[s:e]) for i, (s, e) in enumerate(spans.tolist())] \
        + old.keys[after:]
    starts = np.concatenate([old.starts[:first], spans[:, 0], old.starts[after:] + shift])
    stops = np.concatenate([old.stops[:first], spans[:, 1], old.stops[after:] + shift])
    lo, hi = block_ranges(old.starts, old.size)
    candidates = {j: (old.digests[j], lo[j], hi[j]) for j in range(head)}
    candidates.update({(first + i) // BLOCK_RECORDS: d for i, d in reused.items() if (first + i) % BLOCK_RECORDS == 0})
    for t in range(tail, len(old.digests)):          # the unchanged end, shifted
        i = first + len(spans) + t * BLOCK_RECORDS - after
        if i % BLOCK_RECORDS == 0:
            candidates[i // BLOCK_RECORDS] = (old.digests[t], lo[t] + shift, hi[t] + shift)
    return Records(len(view), starts, stops, keys, _digests(view, starts, candidates))


def _unchanged_ends(data: bytes, old: Records, starts_at: Callable[[bytes, int], bool]) -> tuple[int, int]:
    """(head, tail): old blocks [0, head) have the same bytes at the same offsets (never the last
    block: appended bytes may extend its last record), blocks [tail, ...) the same bytes at the
    end of the file, the first of them starting where a record starts (`starts_at`)."""
    view, shift = memoryview(data), len(data) - old.size
    lo, hi = block_ranges(old.starts, old.size)
    count, head = len(old.digests), 0
    while head < count - 1 and hi[head] <= len(view) and digest(view[lo[head]:hi[head]]) == old.digests[head]:
        head += 1
    tail = count
    while tail - 1 > head and lo[tail - 1] + shift >= lo[head] and \
            digest(view[lo[tail - 1] + shift:hi[tail - 1] + shift]) == old.digests[tail - 1]:
        tail -= 1
    while tail < count and not starts_at(data, int(lo[tail] + shift)):
        tail += 1
    return head, tail


def _shifted_blocks(view: memoryview, spans: np.ndarray, old: Records, blocks: range
                    ) -> tuple[dict[int, str], dict[int, tuple[str, int, int]]]:
    """Old blocks after the unchanged prefix found again, shifted by the change in file size (one
    edit, insertion or removal moves everything after it by that much): ({index in `spans`: key}
    of their records, {index in `spans` of a block's first record: (digest, its bytes' new
    range)})."""
    shift = len(view) - old.size
    lo, hi = block_ranges(old.starts, old.size)
    keys: dict[int, str] = {}
    moved: dict[int, tuple[str, int, int]] = {}
    for k in blocks:
        a, b = k * BLOCK_RECORDS, min((k + 1) * BLOCK_RECORDS, len(old.keys))
        i = int(np.searchsorted(spans[:, 0], old.starts[a] + shift))
        same = i + b - a <= len(spans) and (k > 0 or shift == 0) and hi[k] + shift <= len(view) \
            and np.array_equal(spans[i:i + b - a] - shift, np.stack([old.starts[a:b], old.stops[a:b]], 1))
        if same and digest(view[lo[k] + shift:hi[k] + shift]) == old.digests[k]:
            keys.update(zip(range(i, i + b - a), old.keys[a:b]))
            moved[i] = (old.digests[k], int(lo[k] + shift), int(hi[k] + shift))
    return keys, moved


def _digests(view: memoryview, starts: np.ndarray, reused: dict[int, tuple[str, int, int]]) -> list[str]:
    """Each block's digest: that of an old block whose checked bytes are exactly this block's
    range (`reused`: block -> (digest, lo, hi)), else hashed now."""
    lo, hi = block_ranges(starts, len(view))
    out = []
    for j in range(len(lo)):
        known, a, b = reused.get(j, ("", -1, -1))
        out.append(known if (a, b) == (lo[j], hi[j]) else digest(view[lo[j]:hi[j]]))
    return out
