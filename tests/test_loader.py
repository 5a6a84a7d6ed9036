"""Loader datasets: every sample once per epoch across workers and ranks, deterministic shuffles,
bounded streaming memory, and the same bytes as open_dataset."""
import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gdl_data import open_dataset
from gdl_data.loader import GeometryDataset, GeometryStream
from gdl_data.loader.partition import worker_slices
from gdl_data.loader.row_groups import RowGroup
from loader_samples import assert_same_sample, make_dataset

COUNT = 23   # 23 samples in shards of 7 and 9, row groups of 3: nothing divides evenly


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("loader") / "ds")
    return uri, make_dataset(uri, COUNT)


def ids_of(loader):
    return [s["sample_id"] for s in loader]


def test_partition_gives_every_sample_to_exactly_one_worker_of_one_rank():
    groups, start = [], 0
    for shard, rows in enumerate([5, 0, 7, 1, 4, 4]):
        groups.append(RowGroup(shard, 0, start, rows))
        start += rows
    for world, workers, shuffle in itertools.product([1, 2, 3, 5], [1, 2, 4], [False, True]):
        seen = []
        for rank, worker in itertools.product(range(world), range(workers)):
            for s in worker_slices(groups, shuffle=shuffle, seed=1, epoch=2, rank=rank,
                                   world_size=world, worker=worker, num_workers=workers):
                seen += range(s.group.start + s.lo, s.group.start + s.hi)
        assert sorted(seen) == list(range(start)), (world, workers, shuffle)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("num_workers", [0, 1, 2, 3])
@pytest.mark.parametrize("world_size", [1, 2])
def test_stream_sees_every_sample_exactly_once(dataset, num_workers, world_size):
    uri, rows = dataset
    seen, per_rank = [], []
    for rank in range(world_size):
        stream = GeometryStream(uri, columns=["sample_id", "pos"], shuffle=True, seed=3,
                                shuffle_buffer=5, rank=rank, world_size=world_size)
        stream.set_epoch(1)
        got = ids_of(DataLoader(stream, batch_size=None, num_workers=num_workers))
        assert len(got) == len(stream)
        per_rank.append(len(got))
        seen += got
    assert sorted(seen) == sorted(r["sample_id"] for r in rows)
    # uneven split: ranks differ by at most one sample, and none is dropped
    assert max(per_rank) - min(per_rank) <= 1 and sum(per_rank) == COUNT


def test_pad_ranks_repeats_one_sample_on_the_short_rank_only(dataset):
    uri, _ = dataset
    got = [ids_of(GeometryStream(uri, columns=["sample_id"], rank=r, world_size=2, pad_ranks=True))
           for r in range(2)]
    assert [len(g) for g in got] == [12, 12]
    everything = got[0] + got[1]
    assert len(set(everything)) == COUNT
    short = got[0]   # rank 0 holds samples 0..10 (11 = 23 // 2), then repeats its first
    assert short[-1] == short[0] and len(set(short)) == 11


def test_same_seed_and_epoch_same_order_other_epoch_other_order(dataset):
    uri, _ = dataset

    def order(epoch, seed=7, workers=2):
        stream = GeometryStream(uri, columns=["sample_id"], shuffle=True, seed=seed, shuffle_buffer=6)
        stream.set_epoch(epoch)
        return ids_of(DataLoader(stream, batch_size=None, num_workers=workers))

    first = order(0)
    assert order(0) == first
    assert order(1) != first and sorted(order(1)) == sorted(first)
    assert order(0, seed=8) != first
    unshuffled = ids_of(GeometryStream(uri, columns=["sample_id"]))
    assert unshuffled == [f"id{i:04d}" for i in range(COUNT)] != first


def test_set_epoch_reaches_persistent_workers(dataset):
    uri, _ = dataset
    stream = GeometryStream(uri, columns=["sample_id"], shuffle=True, seed=1, shuffle_buffer=4)
    loader = DataLoader(stream, batch_size=None, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in range(3):
        stream.set_epoch(epoch)
        epochs.append(ids_of(loader))
    for epoch in range(3):
        fresh = GeometryStream(uri, columns=["sample_id"], shuffle=True, seed=1, shuffle_buffer=4)
        fresh.set_epoch(epoch)
        assert ids_of(DataLoader(fresh, batch_size=None, num_workers=2)) == epochs[epoch]
    assert epochs[0] != epochs[1]


def test_round_trip_byte_equal_with_open_dataset(dataset):
    uri, rows = dataset
    reference = open_dataset(uri)
    mapped = GeometryDataset(uri)
    streamed = list(GeometryStream(uri))
    assert len(mapped) == len(reference) == len(streamed) == COUNT
    for i in [*range(COUNT), -1]:
        assert_same_sample(mapped[i], reference[i])
    for i in range(COUNT):
        assert_same_sample(streamed[i], reference[i])
        assert_same_sample(streamed[i], rows[i])   # and the bytes that were written
    with pytest.raises(IndexError):
        mapped[COUNT]


def test_projection_reads_only_the_asked_columns_and_names_the_others(dataset):
    uri, _ = dataset
    sample = GeometryDataset(uri, columns=["pos", "evals"])[4]
    assert set(sample) == {"pos", "evals"}
    with pytest.raises(ValueError, match=r"no column \['normals'\].*choose from"):
        GeometryStream(uri, columns=["pos", "normals"])
    with pytest.raises(TypeError, match="list of column names"):
        GeometryDataset(uri, columns="pos")
    with pytest.raises(ValueError, match="shuffle_buffer must be an integer ≥ 1"):
        GeometryStream(uri, shuffle_buffer=0)
    with pytest.raises(ValueError, match="rank must be in"):
        GeometryStream(uri, rank=2, world_size=2)


def test_transform_is_applied_to_each_sample(dataset):
    uri, rows = dataset

    def center(sample):
        return {**sample, "pos": sample["pos"] - sample["pos"].mean(0)}

    for ds in (GeometryDataset(uri, columns=["pos"], transform=center),
               GeometryStream(uri, columns=["pos"], transform=center)):
        got = ds[2] if isinstance(ds, GeometryDataset) else list(ds)[2]
        np.testing.assert_allclose(got["pos"].numpy(), rows[2]["pos"] - rows[2]["pos"].mean(0),
                                   atol=1e-6)


def test_stream_memory_is_bounded_by_open_row_groups_and_reservoir(tmp_path):
    """Arrow's allocator counts every decoded byte: the peak is one shuffle window (10 samples
    rounded up to whole row groups of 4, so 12) plus nothing else, far less than the dataset.
    The arrays compress, so they are decoded by pyarrow (uncompressed ones would be views of
    the mapped file, which the allocator does not see)."""
    import pyarrow as pa
    from storage import commit_version, write_shard

    uri, group_rows, sample_bytes = str(tmp_path / "big"), 4, 4096 * 4
    rng = np.random.default_rng(0)
    rows = [{"sample_id": f"s{i}", "source": "x", "domain": "graph",
             "x": np.repeat(rng.random(64), 64).astype(np.float32)} for i in range(200)]
    commit_version(uri, [write_shard(uri, rows[i:i + 40], row_group_size=group_rows)
                         for i in range(0, 200, 40)], [])
    stream = GeometryStream(uri, columns=["x"], shuffle=True, shuffle_buffer=10)
    base, peak, count = pa.total_allocated_bytes(), 0, 0
    for _ in stream:
        peak, count = max(peak, pa.total_allocated_bytes() - base), count + 1
    assert count == 200
    assert peak <= 12 * sample_bytes * 1.1
    assert peak < 200 * sample_bytes / 10


def test_map_dataset_cache_stays_within_its_budget(dataset):
    uri, _ = dataset
    ds = GeometryDataset(uri, cache_bytes=4000)
    for i in np.random.default_rng(0).permutation(COUNT):
        ds[int(i)]
        assert ds._cached_bytes <= 4000 or len(ds._cache) == 1


def test_map_dataset_in_workers_matches_single_process(dataset):
    uri, _ = dataset
    ds = GeometryDataset(uri, columns=["sample_id", "evecs"])
    loader = DataLoader(ds, batch_size=None, num_workers=2, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    got = {s["sample_id"]: s["evecs"] for s in loader}
    assert len(got) == COUNT
    for i in range(COUNT):
        assert torch.equal(got[ds[i]["sample_id"]], ds[i]["evecs"])
