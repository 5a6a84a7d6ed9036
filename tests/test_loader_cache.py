"""The decoded cache: same bytes as open_dataset, no copy on a hit, keyed by content."""
import numpy as np
import pyarrow as pa
import torch

from gdl_data import open_dataset
from gdl_data.loader import GeometryDataset, GeometryStream
from loader_samples import assert_same_sample, make_dataset
from storage import commit_version, write_shard


def mapped_file(address: int) -> str | None:
    """The file whose mapping holds `address` in this process, from /proc/self/maps."""
    with open("/proc/self/maps") as fh:
        for line in fh:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= address < hi:
                return fields[5].strip() if len(fields) == 6 else None
    return None


def test_cached_reads_equal_open_dataset_and_copy_nothing(tmp_path):
    uri, cache = str(tmp_path / "ds"), tmp_path / "cache"
    make_dataset(uri, 11)
    reference = open_dataset(uri)
    first = list(GeometryStream(uri, cache_dir=cache))            # misses: read Parquet, write
    files = sorted(cache.glob("*.arrow"))
    assert len(files) == len(GeometryStream(uri).source.groups)
    before = pa.total_allocated_bytes()
    second = list(GeometryStream(uri, cache_dir=cache))           # hits: memory-mapped
    # Parquet decoding allocates every array's bytes; a mapped hit allocates none of them
    assert pa.total_allocated_bytes() - before < 1024
    for got_first, got_second, i in zip(first, second, range(11)):
        assert_same_sample(got_first, reference[i])
        assert_same_sample(got_second, reference[i])
    assert sorted(cache.glob("*.arrow")) == files
    # the tensors of a hit are views of the cache file's mapping
    for key in ("pos", "evecs", "edge_index"):
        where = mapped_file(second[3][key].data_ptr())
        assert where is not None and where.startswith(str(cache)) and where.endswith(".arrow")


def test_in_place_changes_stay_private(tmp_path):
    uri, cache = str(tmp_path / "ds"), tmp_path / "cache"
    rows = make_dataset(uri, 5)
    GeometryDataset(uri, columns=["pos"], cache_dir=cache)[0]     # fills the cache
    hit = GeometryDataset(uri, columns=["pos"], cache_dir=cache)[0]["pos"]
    hit.mul_(0)                                                   # a careless transform
    again = GeometryDataset(uri, columns=["pos"], cache_dir=cache)[0]["pos"]
    assert torch.equal(again, torch.from_numpy(rows[0]["pos"]))


def test_same_shard_name_other_content_is_not_served_from_the_cache(tmp_path):
    """write_shard names a shard by its sample ids: two datasets with the same ids and other
    arrays share shard names, and must not share cache entries."""
    cache = tmp_path / "cache"
    values = {}
    for name, scale in (("a", 1.0), ("b", 2.0)):
        uri = str(tmp_path / name)
        rows = [{"sample_id": f"s{i}", "source": "x", "domain": "graph",
                 "x": np.full(4, scale * i, dtype=np.float32)} for i in range(3)]
        commit_version(uri, [write_shard(uri, rows)], [])
        values[name] = [s["x"] for s in GeometryStream(uri, cache_dir=cache)]
    assert open_dataset(str(tmp_path / "a")).manifest["shards"][0]["path"] == \
        open_dataset(str(tmp_path / "b")).manifest["shards"][0]["path"]
    assert [v.tolist() for v in values["b"]] == [[2.0 * i] * 4 for i in range(3)]
    assert len(list(cache.glob("*.arrow"))) == 2
