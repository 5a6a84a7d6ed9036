"""Issue 14: streaming a dataset from S3 (a real moto server on loopback) through the bounded
local shard cache: same bytes as the local copy, the size limit held, shared by concurrent ranks
and workers, nothing downloaded twice when the cache holds the dataset."""
import itertools

import numpy as np
import pytest
from torch.utils.data import DataLoader

from gdl_data.loader import GeometryStream
from gdl_data.loader.shard_cache import ShardCache
from loader_samples import assert_same_sample, make_dataset
from servers import moto_server

COUNT = 40   # 8 shards of 5 samples


@pytest.fixture(scope="module")
def s3_dataset(tmp_path_factory):
    with moto_server() as endpoint:   # DataLoader workers inherit its environment
        import s3fs
        s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}).mkdir("gdl-loader")
        rows = make_dataset("s3://gdl-loader/ds", COUNT, shard_sizes=(5,), row_group_size=2)
        yield "s3://gdl-loader/ds", {r["sample_id"]: r for r in rows}


def shard_bytes(stream):
    store = stream.source.store
    return [store.fs.size(store.shard_path(i)) for i in range(len(store.manifest["shards"]))]


def test_a_stream_from_s3_keeps_its_shard_cache_within_the_limit(s3_dataset, tmp_path):
    uri, rows = s3_dataset
    probe = GeometryStream(uri)
    limit = 3 * max(shard_bytes(probe))                      # room for 3 of the 8 shards
    stream = GeometryStream(uri, shuffle=True, seed=2, shard_cache=tmp_path / "shards",
                            shard_cache_bytes=limit, prefetch_shards=1)
    cache = stream.source.shards
    seen = []
    for sample in stream:
        assert cache.cached_bytes() <= limit
        assert_same_sample(sample, rows[sample["sample_id"]])
        seen.append(sample["sample_id"])
    assert sorted(seen) == sorted(rows)
    assert cache.downloads >= 8 and cache.cached_bytes() <= limit
    assert not list((tmp_path / "shards").glob(".*.tmp"))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_two_ranks_with_two_workers_each_share_one_cache_and_download_nothing_twice(s3_dataset, tmp_path):
    uri, rows = s3_dataset
    folder = tmp_path / "shards"

    def loaders():
        streams = [GeometryStream(uri, columns=["sample_id", "pos"], shuffle=True, seed=1, rank=r,
                                  world_size=2, shard_cache=folder, prefetch_shards=2) for r in range(2)]
        return [DataLoader(s, batch_size=None, num_workers=2) for s in streams]

    def epoch():   # both ranks' workers (4 processes) read at once, from one cache folder
        seen = []
        for a, b in itertools.zip_longest(*loaders()):
            seen += [s["sample_id"] for s in (a, b) if s is not None]
        return seen

    assert sorted(epoch()) == sorted(rows)
    files = {p.name: p.stat().st_ino for p in folder.glob("*.parquet")}
    assert len(files) == 8                                   # each shard once: the default limit holds them all
    assert sorted(epoch()) == sorted(rows)
    assert {p.name: p.stat().st_ino for p in folder.glob("*.parquet")} == files   # none fetched again


def test_a_shard_whose_bytes_changed_after_commit_is_refused(s3_dataset, tmp_path):
    uri, _ = s3_dataset
    stream = GeometryStream(uri, shard_cache=tmp_path / "shards")
    entry = stream.source.store.manifest["shards"][0]
    if "sha256" not in entry:
        pytest.fail("the writer records each shard's sha256 in the manifest")
    entry["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="do not match the manifest's sha256"):
        ShardCache(tmp_path / "other", stream.source.store, 1 << 30).fetch(0)


@pytest.mark.parametrize("client", ["curl", "fsspec"])
def test_a_row_group_is_read_once_its_bytes_are_in_and_a_cut_download_resumes(s3_dataset, tmp_path,
                                                                             client, monkeypatch):
    from gdl_data.loader import shard_cache
    from storage.pages import group_end
    if client == "fsspec":
        monkeypatch.setattr(shard_cache, "CURL", None)   # as on a machine without curl
    elif shard_cache.CURL is None:
        pytest.fail("curl is needed for this test (it is how shards come from S3)")
    uri, rows = s3_dataset
    stream = GeometryStream(uri, columns=["sample_id", "pos", "faces"], shard_cache=tmp_path / "shards")
    store, cache = stream.source.store, stream.source.shards
    end = group_end(store.footer(0), 0)
    assert end < store.manifest["shards"][0]["bytes"]
    _, part, _ = cache._paths(0)
    part.write_bytes(store.fs.cat_file(store.shard_path(0), start=0, end=end))   # a download cut short
    mapped = cache.mapped(0, end)   # the part: it also starts finishing the download
    assert mapped.size == end       # read from the bytes that were there, not a whole shard
    got = store.read_group_rows(0, 0, ["sample_id", "pos", "faces"], mapped=mapped)
    assert len(got) == 2
    for sample in got:
        for key in ("pos", "faces"):
            want = rows[sample["sample_id"]][key]
            assert sample[key].dtype == want.dtype and np.array_equal(sample[key], want)
    cache.start(0).result()   # resumed after those bytes, then the whole file's sha256 checked
    assert cache.downloads == 1 and not part.exists() and len(list(cache.folder.glob("*.parquet"))) == 1
    _, part, _ = cache._paths(1)
    part.write_bytes(b"\0" * end)   # bytes that are not the shard's
    with pytest.raises(ValueError, match="do not match the manifest's sha256"):
        cache.fetch(1)
    assert not part.exists()   # deleted: the next download starts afresh
