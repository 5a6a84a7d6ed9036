"""Shard codecs and int64 narrowing (issue 11): every reader returns the contract's dtypes and the
written values, whatever the layout; the layout is what the README and the footer say."""
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gdl_data.errors import SpecError
from gdl_data.loader import GeometryStream
from pipelines.spec import parse_spec
from storage import StoredDataset, commit_version, write_shard
from storage.arrays import infer_infos, rows_to_table
from storage.reader import read_rows
from storage.writer import COMPRESS_BELOW, encode_rows

README = Path(__file__).resolve().parents[1] / "README.md"
LAYOUTS = [(codec, narrow) for codec in ("none", "snappy", "lz4", "zstd", "zstd-9") for narrow in (False, True)]


def _rows(n, seed=0):
    """Mesh-like rows: float32 and int64 arrays (one past int32, one column absent in a row)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        m = 20 + 3 * i
        row = {"sample_id": f"id{i}", "source": f"f{i}.ply", "domain": "mesh",
               "pos": rng.normal(size=(m, 3)).astype(np.float32),
               "faces": rng.integers(0, m, size=(2 * m, 3)).astype(np.int64),
               "edge_index": np.stack([np.arange(m), np.roll(np.arange(m), 1)]).astype(np.int64),
               "big": np.array([-(2 ** 40), i, 2 ** 33], dtype=np.int64),
               "z": rng.integers(1, 9, size=m).astype(np.int64),
               "node_ids": np.array([f"v{j}" for j in range(m)]), "nside": np.int64(8)}
        if i == 2:
            del row["edge_index"]
        rows.append(row)
    return rows


def _same(want, got):
    assert want.keys() == got.keys()
    for k, v in want.items():
        if isinstance(v, np.ndarray):
            assert (got[k].dtype, got[k].shape) == (v.dtype, v.shape), k
            assert got[k].tobytes() == v.tobytes(), k
        else:
            assert got[k] == v, k


def _dataset(uri, rows, **layout):
    shards = [write_shard(str(uri), rows[:5], row_group_size=2, **layout),
              write_shard(str(uri), rows[5:], row_group_size=2, **layout)]
    return commit_version(str(uri), shards, [])


@pytest.mark.parametrize("codec,narrow", LAYOUTS)
def test_every_reader_returns_the_written_values_and_dtypes(tmp_path, codec, narrow):
    rows = _rows(8)
    manifest = _dataset(tmp_path, rows, compression=codec, narrow=narrow)
    assert manifest["columns"]["faces"]["dtype"] == "<i8"   # the contract's dtype, always
    ds = StoredDataset(str(tmp_path))
    for i, row in enumerate(rows):   # row groups of 2: every row is a slice at an offset
        _same(row, ds[i])
    for row, got in zip(rows, ds):
        _same(row, got)
    for row, got in zip(rows[1:5], read_rows(str(tmp_path), manifest["shards"][0]["path"], 1, 4)):
        _same(row, got)
    stream = list(GeometryStream(str(tmp_path), shuffle=False))
    assert [s["sample_id"] for s in stream] == [r["sample_id"] for r in rows]
    for row, got in zip(rows, stream):
        for k in ("pos", "faces", "edge_index", "big", "z"):
            if k in row:
                assert got[k].numpy().dtype == row[k].dtype and np.array_equal(got[k].numpy(), row[k])


def test_int64_is_narrowed_where_it_fits_and_the_codec_compresses_it(tmp_path):
    manifest = _dataset(tmp_path, _rows(8), compression="lz4")
    path = tmp_path / manifest["shards"][0]["path"]
    stored = {f.name: (f.metadata or {}).get(b"gdl.stored_dtype") for f in pq.read_schema(path)}
    meta = pq.read_metadata(path).row_group(0)
    codec = {meta.column(c).path_in_schema: meta.column(c).compression for c in range(meta.num_columns)}
    # an index pattern: int32 on disk, then lz4
    assert stored["edge_index"] == b"<i4" and codec["edge_index"].startswith("LZ4")
    assert len(pq.read_table(path, columns=["edge_index"])["edge_index"][0].as_py()) == 4 * 2 * 20
    # random small ints: lz4 cannot cut their int32 bytes by a third, so they stay as they were
    assert stored["faces"] is None and codec["faces"] == "UNCOMPRESSED"
    assert stored["big"] is None and stored["pos"] is None   # 2**40 needs int64; floats untouched
    assert codec["faces__shape.list.element"].startswith("LZ4")   # small columns: always the codec
    plain = _dataset(tmp_path / "plain", _rows(8), compression="none")   # today's layout exactly
    path = tmp_path / "plain" / plain["shards"][0]["path"]
    assert not any(b"gdl.stored_dtype" in (f.metadata or {}) for f in pq.read_schema(path))
    meta = pq.read_metadata(path).row_group(0)
    assert {meta.column(c).compression for c in range(meta.num_columns)} == {"UNCOMPRESSED"}


def test_the_codec_goes_only_where_it_saves(tmp_path):
    rng = np.random.default_rng(1)
    rows = [{"sample_id": f"s{i}", "source": "x", "domain": "graph",
             "noise": rng.normal(size=(40000,)).astype(np.float32),   # incompressible mantissas
             "edge_index": np.repeat(np.arange(20000), 2).reshape(2, -1).astype(np.int64)}
            for i in range(4)]
    manifest = commit_version(str(tmp_path), [write_shard(str(tmp_path), rows, compression="lz4")], [])
    meta = pq.read_metadata(tmp_path / manifest["shards"][0]["path"])
    chunks = {meta.row_group(0).column(c).path_in_schema: meta.row_group(0).column(c)
              for c in range(meta.num_columns)}
    assert chunks["noise"].compression == "UNCOMPRESSED"
    assert chunks["edge_index"].compression.startswith("LZ4")
    # the index column: int32 on disk, then lz4 on a run-length-like pattern: far under half
    assert chunks["edge_index"].total_compressed_size < 0.5 * 4 * rows[0]["edge_index"].nbytes


def test_the_readme_decoding_snippet_works_on_a_narrowed_compressed_dataset(tmp_path, monkeypatch):
    layout = README.read_text().split("**Layout**", 1)[1].split("**The manifest**", 1)[0]
    assert "gdl.stored_dtype" in layout and "compression: lz4" in layout
    snippet = re.search(r"```python\n(.*?)```", layout, re.S).group(1)
    rows = _rows(3)
    for row in rows:   # a real mesh's faces: neighbouring indices, which lz4 compresses
        row["faces"] = np.arange(row["faces"].size, dtype=np.int64).reshape(row["faces"].shape) // 3
    manifest = _dataset(tmp_path / ".gdl-work" / "storage" / "shapes", rows)
    path = tmp_path / ".gdl-work" / "storage" / "shapes" / manifest["shards"][0]["path"]
    assert pq.read_schema(path).field("faces").metadata[b"gdl.stored_dtype"] == b"<i4"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(snippet, scope)   # noqa: S102 - the README's own code, run as a user would
    assert scope["faces"].dtype == np.int64 and np.array_equal(scope["faces"], rows[0]["faces"])


def test_compression_is_a_spec_key_checked_early():
    base = {"name": "t", "domain": "mesh", "source": "raw", "output": "out"}
    assert parse_spec(base).compression == "lz4"
    assert parse_spec({**base, "compression": "zstd-3"}).layout() == {"row_group_size": 64, "compression": "zstd-3"}
    for bad in ("gzip", "zstd-99", 3, None):
        with pytest.raises(SpecError, match="write e.g. compression: lz4"):
            parse_spec({**base, "compression": bad})


def test_a_column_narrowed_then_widened_back_is_the_column_built_wide():
    """encode_rows widens only the narrowed columns the codec cannot shrink (not the whole table
    built again): the table is the one rows_to_table builds with just the kept ones narrowed."""
    rows = _rows(8)
    infos = infer_infos(rows)
    table, _ = encode_rows(rows, infos, "lz4", COMPRESS_BELOW, True)
    kept = {f.name for f in table.schema if b"gdl.stored_dtype" in (f.metadata or {})}
    assert "edge_index" in kept and "faces" not in kept      # one kept narrow, one widened back
    assert table.equals(rows_to_table(rows, infos, kept), check_metadata=True)
