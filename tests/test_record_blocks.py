"""Re-splitting a changed multi-record file from its previous version's record blocks
(pipelines/record_blocks.py) gives exactly what splitting and hashing it afresh gives, for every
kind of change, while hashing only around what changed.

The reference is the plain path: the format's splitter over the whole file and one SHA-256 per
record (hashlib, not the module's helpers)."""
import hashlib
import random

import numpy as np
import pytest

from gdl_data.readers.molecule import sdf_record_spans, sdf_record_starts_at
from gdl_data.readers.xyz import xyz_frame_spans
from pipelines import record_blocks
from pipelines.record_blocks import BLOCK_RECORDS, split_records


def _sdf_record(rng: random.Random, i: int) -> bytes:
    lines = [f"mol{i}", "  synthetic", ""] + [f"{rng.random():.4f} C" for _ in range(rng.randint(1, 6))]
    lines += ["M  END", "> <gap>", f"{rng.random():.3f}", ""]
    return ("\n".join(lines) + "\n").encode()


def _xyz_frame(rng: random.Random, i: int) -> bytes:
    atoms = rng.randint(1, 4)
    return (f"{atoms}\nframe {i}\n" + "".join(f"H {rng.random():.3f} 0 0\n" for _ in range(atoms))).encode()


FORMATS = {"sdf": (sdf_record_spans, _sdf_record, b"$$$$\n", sdf_record_starts_at),
           "xyz": (xyz_frame_spans, _xyz_frame, b"", None)}


def _changes(rng: random.Random, records: list[bytes], make) -> dict[str, list[bytes]]:
    n, k = len(records), rng.randrange(len(records))
    return {"append one": records + [make(rng, n)],
            "append many": records + [make(rng, n + j) for j in range(150)],
            "edit, same length": records[:k] + [records[k].replace(b"mol", b"MOL").replace(b"frame", b"FRAME")]
            + records[k + 1:],
            "edit, other length": records[:k] + [make(rng, 10 ** 6)] + records[k + 1:],
            "insert": records[:k] + [make(rng, -2)] + records[k:],
            "remove": records[:k] + records[k + 1:],
            "two edits": records[:k // 2] + [make(rng, -3)] + records[k // 2 + 1:k] + [make(rng, -4)] + records[k + 1:],
            "truncated": records[:k] + [records[k][: len(records[k]) // 2]],
            "two merged": records[:k] + [records[k] + b"$$$X\n" + b"".join(records[k + 1:k + 2])] + records[k + 2:],
            # the first record of a block joined to the record before it: that block's bytes
            # are unchanged, but it no longer starts where a record starts
            "merged at a block's start": records[:BLOCK_RECORDS - 1] + [b"$$$X\n".join(records[BLOCK_RECORDS - 1:BLOCK_RECORDS + 1])]
            + records[BLOCK_RECORDS + 1:],
            "unchanged": list(records),
            "emptied": []}


def _file(records: list[bytes], end: bytes) -> bytes:
    return b"".join(r + end for r in records)


def _fresh(data: bytes, split):
    spans = split(data)
    return [(s, e, hashlib.sha256(data[s:e]).hexdigest()[:32]) for s, e in spans]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_change_gives_what_a_fresh_split_gives(fmt):
    split, make, end, starts_at = FORMATS[fmt]
    for seed in range(12):
        rng = random.Random(seed)
        records = [make(rng, i) for i in range(rng.choice([5, 64, 130, 300]))]
        old = split_records(_file(records, end), split)
        for change, new_records in _changes(rng, records, make).items():
            data = _file(new_records, end)
            got = split_records(data, split, old, starts_at)
            fresh = split_records(data, split)
            expected = _fresh(data, split)
            if not expected:
                assert got is None and fresh is None, (seed, change)
                continue
            assert list(zip(got.starts.tolist(), got.stops.tolist(), got.keys)) == expected, (seed, change)
            assert got.digests == fresh.digests and got.file_key == fresh.file_key, (seed, change)


def test_block_digests_hash_the_bytes_that_tile_the_file():
    rng = random.Random(0)
    data = _file([_sdf_record(rng, i) for i in range(200)], b"$$$$\n")
    records = split_records(data, sdf_record_spans)
    starts = [s for s, _ in sdf_record_spans(data)]
    edges = [0] + starts[BLOCK_RECORDS::BLOCK_RECORDS] + [len(data)]
    assert records.digests == [hashlib.sha256(data[a:b]).hexdigest()[:32] for a, b in zip(edges, edges[1:])]


def _hashed_bytes(monkeypatch) -> list[int]:
    sizes: list[int] = []
    real = record_blocks.digest

    def counting(data):
        sizes.append(len(data))
        return real(data)
    monkeypatch.setattr(record_blocks, "digest", counting)
    return sizes


@pytest.mark.parametrize("change, passes", [("append one", 1), ("edit, same length", 1), ("insert", 2),
                                            ("remove", 2)])
def test_a_small_change_is_split_and_hashed_only_around_it(monkeypatch, change, passes):
    """A fresh split hashes every record and every block (two passes over the bytes, 650
    calls); after one change only the blocks (one call each) and the records around the change
    are hashed (the changed block three times: found changed, record by record, as a new
    block), and only the changed block (for an append, the last) is split again. After an
    insertion or a removal the blocks that follow hold other records than before, so their
    digests are hashed again: a second pass over that part."""
    rng = random.Random(1)
    records = [_sdf_record(rng, i) for i in range(640)]
    old = split_records(_file(records, b"$$$$\n"), sdf_record_spans)
    data = _file(_changes(rng, records, _sdf_record)[change], b"$$$$\n")
    calls = _hashed_bytes(monkeypatch)
    split_bytes = []

    def split(part):
        split_bytes.append(len(part))
        return sdf_record_spans(part)
    split_records(data, split, old, sdf_record_starts_at)
    block = len(data) / len(old.digests)
    assert len(calls) <= 4 * BLOCK_RECORDS, len(calls)
    assert sum(calls) <= passes * len(data) + 3 * block
    assert sum(split_bytes) <= 2.5 * block


def test_sdf_spans_are_local_and_xyz_spans_are_not():
    """The property `starts_at` declares (gdl_data/readers/__init__.py register_records): it
    finds exactly the records' starts; splitting between any two of them gives those spans;
    bytes added at the end leave every record but the last as it was. An XYZ frame whose last
    line ends in "\\r" gains the "\\n" that follows it: its span depends on the next bytes."""
    rng = random.Random(2)
    data = _file([_sdf_record(rng, i) for i in range(40)], b"$$$$\n").replace(b"$$$$\n", b"$$$$ x\n", 3)
    spans = sdf_record_spans(data)
    starts = [s for s, _ in spans]
    assert [q for q in range(len(data)) if sdf_record_starts_at(data, q)] == starts
    for j, start in enumerate(starts):
        for k in range(j + 1, len(starts)):
            assert [(s + start, e + start) for s, e in sdf_record_spans(data[start:starts[k]])] == spans[j:k]
        assert [(s + start, e + start) for s, e in sdf_record_spans(data[start:])] == spans[j:]
    for tail in (b"x", b"$$$$", b"\n$$$$\n", b"extra\n$$$$\n"):
        assert sdf_record_spans(data + tail)[:len(spans) - 1] == spans[:-1]
    frames = b"1\na\nH 0 0 0\r"
    assert xyz_frame_spans(frames) != xyz_frame_spans(frames + b"\n1\nb\nH 0 0 0\n")[:1]


def test_records_found_unchanged_keep_their_spans_as_numpy_arrays():
    rng = random.Random(3)
    records = [_sdf_record(rng, i) for i in range(300)]
    old = split_records(_file(records, b"$$$$\n"), sdf_record_spans)
    new = split_records(_file(records + records[:1], b"$$$$\n"), sdf_record_spans, old, sdf_record_starts_at)
    assert new.starts.dtype == np.int64 and len(new.keys) == 301 and new.keys[:300] == old.keys


def test_a_last_record_without_its_terminator_that_grows_is_split_again():
    """Appended bytes can change the file's last record (its `$$$$` line was missing): the
    last block is never taken as unchanged."""
    rng = random.Random(4)
    records = [_sdf_record(rng, i) for i in range(130)]
    data = _file(records, b"$$$$\n")[:-5]              # the last record unterminated
    old = split_records(data, sdf_record_spans)
    grown = data + b"> <more>\n1\n\n$$$$\n" + _file([_sdf_record(rng, 130)], b"$$$$\n")
    got = split_records(grown, sdf_record_spans, old, sdf_record_starts_at)
    assert list(zip(got.starts.tolist(), got.stops.tolist(), got.keys)) == _fresh(grown, sdf_record_spans)
