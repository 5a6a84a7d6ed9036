"""Issue 10: a re-run copies a shard's unchanged rows from the old shard as Arrow slices
(storage/concat.py, pipelines/compute.py `Copied`), and the shard it writes is byte for byte the
shard a fresh write of the same rows gives: the reference here is always write_shard / write_items
given every row as numpy records, the path that never copies.
"""
import numpy as np
import pyarrow as pa
import pytest

from pipelines.cache import Item
from pipelines.compute import Copied, ItemResult, write_items
from storage import StoredDataset, commit_version, write_shard
from storage.concat import rows_part
from storage.reader import read_stored

LAYOUT = {"row_group_size": 8, "compression": "lz4"}


def _row(rng, i, wide=False, extra=False):
    n = int(rng.integers(3, 9))
    row = {"sample_id": f"s{i}", "source": f"mols.sdf#{i}", "domain": "molecule",
           "pos": rng.normal(size=(n, 3)).astype(np.float32),
           "edge_index": rng.integers(0, 2 ** 40 if wide else n, size=(2, 2 * n)),
           "num_nodes": np.int64(n), "energy": np.float32(rng.normal())}
    if i % 3 == 0:
        row["charges"] = rng.normal(size=n).astype(np.float32)
    if i % 4 == 1:
        row["names"] = np.array([f"a{j}" for j in range(n)])
    if extra:
        row["only_here"] = np.arange(5, dtype=np.int64)
    return row


def _write(uri, name, rows=(), parts=None):
    return write_shard(uri, list(rows), name=name, files=[{"file": "mols.sdf", "file_key": "k", "samples": 1}],
                       row_group_size=8, parts=parts)


def _bytes(uri, entry):
    with open(f"{uri}/{entry['path']}", "rb") as fh:
        return fh.read()


# (old row 5 wide or with a column of its own, new row 5 the same, row 0 removed): each case
# changes what the whole shard decides -- narrowing one way or the other, a column appearing or
# disappearing, the column order (row 1, first once row 0 is gone, has no `pos`: it goes last)
CASES = {"narrow stays": (False, False, False, False, False), "wide -> narrow": (True, False, False, False, False),
         "narrow -> wide": (False, True, False, False, False), "column leaves": (False, False, True, False, False),
         "column arrives": (False, False, False, True, False), "order moves": (False, False, False, False, True)}


@pytest.mark.parametrize("case", CASES)
def test_joined_slices_and_new_rows_write_the_bytes_of_a_fresh_write(tmp_path, case):
    old_wide, new_wide, old_extra, new_extra, drop_first = CASES[case]
    rng = np.random.default_rng(7)
    rows = [_row(rng, i, wide=old_wide and i == 5, extra=old_extra and i == 5) for i in range(30)]
    rows[0].pop("names", None)          # a column the first row lacks comes after row 0's own
    rows[1]["pos"] = rows[9]["pos"] = None      # nulls in a copied slice
    uri = str(tmp_path / "ds")
    old = read_stored(uri, _write(uri, "old", rows)["path"])
    old = pa.concat_tables([old.slice(0, 3), old.slice(3, 10), old.slice(13)])   # several chunks per column
    new5 = _row(rng, 5, wide=new_wide, extra=new_extra)
    first = 1 if drop_first else 0
    fresh = _write(uri, "fresh", rows[first:5] + [new5] + rows[6:])
    joined = _write(uri, "joined", parts=[old.slice(first, 5 - first), rows_part([new5]), old.slice(6)])
    assert _bytes(uri, joined) == _bytes(uri, fresh)
    same = ("rows", "columns", "stats", "bytes", "sha256")
    assert {k: joined[k] for k in same} == {k: fresh[k] for k in same}
    assert ("only_here" in joined["columns"]) == new_extra


def _results(rows, copied_from=None, copy=()):
    """One ItemResult per row (items are records of mols.sdf); the rows at `copy` as Copied rows of
    the shard `copied_from` (its row index given by the sample id), the others as records."""
    results = []
    for k, row in enumerate(rows):
        i = int(row["sample_id"][1:])
        item = Item("mols.sdf", f"key{i}", 0, 0, record=k, start=0, stop=1, key=f"key{i}")
        result = ItemResult(item)
        if k in copy:
            result.copied = Copied(copied_from[0], copied_from[1], i, 1, item.source)
        else:
            result.records = [{**row, "source": item.source}]
        results.append(result)
    return results


def test_a_rewritten_shard_copies_the_right_rows_renamed_and_matches_a_fresh_write(tmp_path):
    rng = np.random.default_rng(11)
    rows = [_row(rng, i) for i in range(20)]
    uri = str(tmp_path / "ds")
    old = write_items(uri, "old", _results(rows), LAYOUT).entry
    # row 4 removed, row 12 edited: the copied rows move up one record and come in two runs
    now = rows[:4] + rows[5:12] + [_row(rng, 12)] + rows[13:]
    copy = {k for k, row in enumerate(now) if row["sample_id"] != "s12"}
    copied = write_items(uri, "copied", _results(now, (uri, old["path"]), copy), LAYOUT)
    fresh = write_items(uri, "fresh", _results(now), LAYOUT)
    assert copied.entry["rows"] == len(now) == fresh.entry["rows"]
    assert _bytes(uri, copied.entry) == _bytes(uri, fresh.entry)
    assert copied.entry["stats"] == fresh.entry["stats"]
    # and those are the rows asked for: ids in order, sources renamed to where each record is now
    commit_version(uri, [copied.entry], [])
    stored = list(StoredDataset(uri))
    assert [r["sample_id"] for r in stored] == [r["sample_id"] for r in now]
    assert [r["source"] for r in stored] == [f"mols.sdf#{k}" for k in range(len(now))]
    for got, want in zip(stored, now):
        assert np.array_equal(got["edge_index"], want["edge_index"]) and got["edge_index"].dtype == np.int64
