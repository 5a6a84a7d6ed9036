"""Reading uncompressed tensor columns in place (storage/pages.py, storage/aligned.py): the same
values as pyarrow decodes, views of the file where the layout allows it, plain Parquet throughout."""
import mmap

import numpy as np
import pyarrow.parquet as pq
import pytest

from storage import StoredDataset, commit_version, write_shard
from storage.aligned import PAD_SUFFIX

DTYPES = ("<f4", "<f8", "<i8", "<i4", "<u1", "<i2", "<f2")


def _rows(n, seed=0, missing=()):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        m = int(rng.integers(1, 40))   # odd byte lengths too: every value must stay aligned
        row = {"sample_id": f"s{i}", "source": f"f{i}", "domain": "mesh", "label": np.int64(i)}
        for j, dtype in enumerate(DTYPES):   # random bytes: no codec shrinks them, all stay plain
            itemsize = np.dtype(dtype).itemsize
            row[f"a{j}"] = rng.integers(0, 256, size=m * (j + 1) * itemsize, dtype=np.uint8) \
                .view(dtype).reshape(m, j + 1)
        if i in missing:
            del row["a0"]
        rows.append(row)
    return rows


def _dataset(path, rows, **kw):
    uri = str(path)
    commit_version(uri, [write_shard(uri, rows[:9], row_group_size=4, **kw), write_shard(uri, rows[9:], **kw)], [])
    return StoredDataset(uri)


def _pyarrow_rows(ds, shard, group, columns):
    return ds.decode(ds.read_row_group(shard, group, columns), columns)


def _in_file(array, size):
    """True when `array`'s bytes lie inside a mapping of the shard (a view, not a copy)."""
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    base = base.obj if isinstance(base, memoryview) else base
    return isinstance(base, mmap.mmap) and len(base) == size


@pytest.mark.parametrize("align", [True, False])
def test_in_place_values_equal_what_pyarrow_decodes(tmp_path, align):
    rows = _rows(14)
    ds = _dataset(tmp_path, rows, align=align)
    columns = ["sample_id", "label", *(f"a{j}" for j in range(len(DTYPES)))]
    i, views, values = 0, 0, 0
    for shard, entry in enumerate(ds.manifest["shards"]):
        size = (tmp_path / entry["path"]).stat().st_size
        for group in range(ds.footer(shard).num_row_groups):
            got, want = ds.read_group_rows(shard, group, columns), _pyarrow_rows(ds, shard, group, columns)
            assert [list(r) for r in got] == [list(r) for r in want]   # same keys, same order
            for g, w in zip(got, want):
                assert g["sample_id"] == w["sample_id"] == rows[i]["sample_id"] and g["label"] == i
                for j, dtype in enumerate(DTYPES):
                    a = g[f"a{j}"]
                    assert a.dtype == np.dtype(dtype) and a.shape == rows[i][f"a{j}"].shape
                    assert a.tobytes() == rows[i][f"a{j}"].tobytes() == w[f"a{j}"].tobytes()
                    assert a.ctypes.data % a.dtype.alignment == 0 and a.flags.writeable
                    views, values = views + _in_file(a, size), values + 1
                i += 1
    assert i == 14
    if align:   # the aligned layout: every value of every dtype read in place
        assert views == values
    else:       # PLAIN values land where they land: the misaligned ones are copies
        assert 0 < views <= values


def test_the_aligned_layout_is_plain_parquet_for_any_reader(tmp_path):
    rows = _rows(14)
    ds = _dataset(tmp_path, rows)
    path = ds.shard_path(0)
    table = pq.read_table(path)
    assert "a1" + PAD_SUFFIX in table.column_names   # the pads are ordinary columns...
    value = np.frombuffer(table["a1"][3].as_py(), "<f8").reshape(table["a1__shape"][3].as_py())
    np.testing.assert_array_equal(value, rows[3]["a1"])   # ...and the documented decode still holds
    import duckdb
    got = duckdb.sql(f"select a2, a2__shape from read_parquet('{path}') where sample_id = 's5'").fetchall()[0]
    np.testing.assert_array_equal(np.frombuffer(got[0], "<i8").reshape(got[1]), rows[5]["a2"])
    # ...that no reader of the dataset returns
    assert not any(c.endswith(PAD_SUFFIX) for c in ds.scan().column_names)
    assert not any(k.endswith(PAD_SUFFIX) for k in ds[0]) and set(ds[0]) == set(rows[0])
    meta = pq.read_metadata(path).row_group(0)
    chunks = {meta.column(j).path_in_schema: meta.column(j) for j in range(meta.num_columns)}
    assert "DELTA_LENGTH_BYTE_ARRAY" in chunks["a0"].encodings and chunks["a0"].compression == "UNCOMPRESSED"


def test_a_column_with_nulls_is_read_by_pyarrow(tmp_path):
    rows = _rows(14, missing={1, 10})
    ds = _dataset(tmp_path, rows)
    got = [r for s in range(2) for g in range(ds.footer(s).num_row_groups) for r in ds.read_group_rows(s, g)]
    assert "a0" not in got[1] and "a0" not in got[10]
    for row, want in zip(got, rows):
        assert set(row) == set(want)
        for key, value in want.items():
            assert np.asarray(row[key]).tobytes() == np.asarray(value).tobytes()


def test_writing_into_a_sample_changes_neither_the_file_nor_the_next_read(tmp_path):
    rows = _rows(14)
    ds = _dataset(tmp_path, rows)
    before = open(ds.shard_path(0), "rb").read()
    first = ds.read_group_rows(0, 0, ["a0"])
    first[0]["a0"][:] = 0   # a transform changing its tensor in place
    assert open(ds.shard_path(0), "rb").read() == before
    assert ds.read_group_rows(0, 0, ["a0"])[0]["a0"].tobytes() == rows[0]["a0"].tobytes()


def test_a_value_whose_length_disagrees_with_its_shape_is_an_error(tmp_path):
    rows = _rows(14)
    ds = _dataset(tmp_path, rows, align=False)   # PLAIN: each value's length is in the file
    path = tmp_path / ds.manifest["shards"][0]["path"]
    data = bytearray(path.read_bytes())
    want = rows[0]["a0"].tobytes()
    at = data.find(len(want).to_bytes(4, "little") + want)
    data[at:at + 4] = (len(want) - 4).to_bytes(4, "little")   # a length prefix changed
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="holds .* bytes where its shape says"):
        StoredDataset(str(tmp_path)).read_group_rows(0, 0, ["a0"])


def _mapping_of(array):
    """The whole-file array a value is a view of (storage/pages.py map_private)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def test_a_mapping_is_reused_only_when_none_of_it_is_alive_and_with_its_written_pages_put_back(tmp_path):
    rows = _rows(14)
    ds = _dataset(tmp_path, rows)
    first = ds.read_group_rows(0, 0, ["a0", "a2"])
    mapping = id(_mapping_of(first[0]["a0"]))
    first[0]["a0"][:] = 0      # a transform writing into its sample...
    first[3]["a2"][:] = -1
    del first                  # ...then done with it
    again = ds.read_group_rows(0, 0, ["a0", "a2"])
    assert id(_mapping_of(again[0]["a0"])) == mapping   # the same mapping: no page faults again
    assert again[0]["a0"].tobytes() == rows[0]["a0"].tobytes()   # but the file's bytes
    assert again[3]["a2"].tobytes() == rows[3]["a2"].tobytes()
    other = ds.read_group_rows(0, 0, ["a0", "a2"])      # `again` still alive: a fresh mapping
    assert _mapping_of(other[0]["a0"]) is not _mapping_of(again[0]["a0"])
    again[0]["a0"][:] = 7
    assert other[0]["a0"].tobytes() == rows[0]["a0"].tobytes()
