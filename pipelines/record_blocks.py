"""Splitting and hashing a changed multi-record file again, without redoing its unchanged records.

A record's key is the SHA-256 of its bytes (pipelines/cache.py). Appending one molecule to a
6,000-record SDF used to mean splitting the whole file again (5 ms) and hashing every record
(6.5 ms, mostly per-call cost), in a re-run whose whole budget is ~80 ms. Here a file's records
are grouped in *blocks* of BLOCK_RECORDS consecutive records; a block's bytes run from its first
record's start to the next block's first start (from byte 0 for the first block, to the end of
the file for the last), so blocks tile the file, and its digest is the SHA-256 of those bytes.
The items index keeps each file version's spans, keys and block digests (storage/items_index.py).

For the next version of the file:
* blocks whose bytes are unchanged at the same offsets, from the start (all but the last:
  appended bytes may extend the last record), keep their spans and keys without being split,
  when the format splits `local`ly (gdl_data/readers/__init__.py `register_records`);
* the rest is split from the first changed block's start; an old block whose bytes reappear
  shifted by the file's change in size, on the same relative record spans, gives its keys;
* every other record is hashed on its own.
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


def split_records(data: bytes, split: Splitter, old: Records | None = None, local: bool = False) -> Records | None:
    """The records of `data` (None when it has none), their keys and block digests. With `old`,
    the previous version's records, blocks found unchanged are not hashed record by record, and
    for a format that splits `local`ly the unchanged blocks from the start are not split again."""
    view = memoryview(data)
    kept = _unchanged_prefix(view, old) if old is not None and local else 0
    first = kept * BLOCK_RECORDS
    pos = int(block_ranges(old.starts, old.size)[0][kept]) if kept else 0
    spans = np.array(split(data[pos:] if pos else data), dtype=np.int64).reshape(-1, 2) + pos
    if not first and not len(spans):
        return None
    shifted, moved = _shifted_blocks(view, spans, old, kept) if old is not None else ({}, {})
    keys = (old.keys[:first] if first else []) + \
        [shifted.get(i) or digest(view[s:e]) for i, (s, e) in enumerate(spans.tolist())]
    starts = np.concatenate([old.starts[:first], spans[:, 0]]) if first else spans[:, 0]
    stops = np.concatenate([old.stops[:first], spans[:, 1]]) if first else spans[:, 1]
    reused = {}
    if kept:
        lo, hi = block_ranges(old.starts, old.size)
        reused = {j: (old.digests[j], lo[j], hi[j]) for j in range(kept)}
    reused.update({(first + i) // BLOCK_RECORDS: d for i, d in moved.items() if (first + i) % BLOCK_RECORDS == 0})
    return Records(len(data), starts, stops, keys, _digests(view, starts, reused))


def _unchanged_prefix(view: memoryview, old: Records) -> int:
    """How many of `old`'s blocks, from the first and never its last, have the same bytes at the
    same offsets in the new file."""
    lo, hi = block_ranges(old.starts, old.size)
    count = 0
    for k in range(len(old.digests) - 1):
        if hi[k] > len(view) or digest(view[lo[k]:hi[k]]) != old.digests[k]:
            break
        count += 1
    return count


def _shifted_blocks(view: memoryview, spans: np.ndarray, old: Records, kept: int
                    ) -> tuple[dict[int, str], dict[int, tuple[str, int, int]]]:
    """Old blocks after the unchanged prefix found again, shifted by the change in file size (one
    edit, insertion or removal moves everything after it by that much): ({index in `spans`: key}
    of their records, {index in `spans` of a block's first record: (digest, its bytes' new
    range)})."""
    shift = len(view) - old.size
    lo, hi = block_ranges(old.starts, old.size)
    keys: dict[int, str] = {}
    moved: dict[int, tuple[str, int, int]] = {}
    for k in range(kept, len(old.digests)):
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
