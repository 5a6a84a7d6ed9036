"""StreamLoader: a GeometryStream's batches from reading threads, the same batches in the same
order as torch's DataLoader with as many worker processes (the reference it is checked against),
mid-epoch resume through it, errors and early exits."""
import threading

import pytest
import torch
from torch.utils.data import DataLoader

from gdl_data.loader import GeometryStream, StreamLoader, collate_graphs
from loader_samples import make_dataset

COUNT = 41   # shards of 7 and 9, row groups of 3: no worker's share is a whole number of batches


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("stream_loader") / "ds")
    make_dataset(path, COUNT)
    return path


def stream(uri, epoch=1, **kw):
    s = GeometryStream(uri, columns=["sample_id", "pos", "faces", "evecs"], shuffle=True, seed=3,
                       shuffle_buffer=6, with_index=True, **kw)
    s.set_epoch(epoch)
    return s


def assert_same_batches(got, ref):
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g["sample_id"] == r["sample_id"]
        for key in ("pos", "faces", "evecs", "batch", "ptr", "sample_index"):
            assert g[key].dtype == r[key].dtype and torch.equal(g[key], r[key]), key


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers,batch,drop_last", [(0, 4, False), (2, 4, False), (3, 5, True),
                                                     (2, 16, False)])
def test_the_batches_and_their_order_are_dataloaders_with_as_many_processes(uri, workers, batch,
                                                                             drop_last):
    ref = list(DataLoader(stream(uri), batch_size=batch, num_workers=workers, collate_fn=collate_graphs,
                          drop_last=drop_last))
    loader = StreamLoader(stream(uri), batch_size=batch, num_workers=workers, drop_last=drop_last)
    expected = len(loader)
    got = list(loader)
    assert_same_batches(got, ref)
    assert expected == len(got)
    seen = [i for b in got for i in b["sample_index"].tolist()]
    if not drop_last:
        assert sorted(seen) == list(range(COUNT))   # every sample once
    assert any(len(b["sample_id"]) < batch for b in ref) or drop_last   # a partial batch was met


def test_each_epoch_follows_set_epoch_and_the_threads_end_with_it(uri):
    s = stream(uri)
    loader = StreamLoader(s, batch_size=4, num_workers=2)
    before = threading.active_count()
    orders = []
    for epoch in (1, 2):
        s.set_epoch(epoch)
        orders.append([i for b in loader for i in b["sample_index"].tolist()])
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1]) == list(range(COUNT))
    assert threading.active_count() == before


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_resumed_mid_epoch_it_yields_the_rest_as_a_resumed_dataloader_does(uri):
    first = stream(uri)
    batches = iter(StreamLoader(first, batch_size=4, num_workers=2))
    used = []
    for _ in range(3):   # the threads have read ahead of what was used
        batch = next(batches)
        first.record(batch["sample_index"])
        used += batch["sample_index"].tolist()
    batches.close()
    state = first.state_dict()
    resumed = []
    for loader in (StreamLoader, lambda s, **kw: DataLoader(s, collate_fn=collate_graphs, **kw)):
        again = stream(uri)
        again.load_state_dict(state)
        resumed.append(list(loader(again, batch_size=4, num_workers=2)))
    assert_same_batches(*resumed)
    rest = [i for b in resumed[0] for i in b["sample_index"].tolist()]
    assert sorted(used + rest) == list(range(COUNT))
    again = stream(uri)
    again.load_state_dict(state)
    assert len(StreamLoader(again, batch_size=4, num_workers=2)) == len(resumed[0])
    elastic = stream(uri)   # resumed on 3 threads: the rest shared anew, every sample once
    elastic.load_state_dict(state)
    loader = StreamLoader(elastic, batch_size=4, num_workers=3)
    expected = len(loader)
    batches = list(loader)
    assert expected == len(batches)
    assert sorted(used + [i for b in batches for i in b["sample_index"].tolist()]) == list(range(COUNT))


def test_ranks_share_the_epoch_each_sample_once(uri):
    seen = [i for rank in (0, 1)
            for b in StreamLoader(stream(uri, rank=rank, world_size=2), batch_size=4, num_workers=2)
            for i in b["sample_index"].tolist()]
    assert sorted(seen) == list(range(COUNT))


def test_an_error_in_a_thread_reaches_the_consumer_and_stops_the_others(uri):
    def fail(sample):
        if sample["sample_id"] == "id0007":
            raise ValueError("bad sample id0007")
        return sample

    before = threading.active_count()
    with pytest.raises(ValueError, match="bad sample id0007"):
        list(StreamLoader(stream(uri, transform=fail), batch_size=4, num_workers=2))
    assert threading.active_count() == before


def test_leaving_early_joins_the_threads(uri):
    before = threading.active_count()
    loader = StreamLoader(stream(uri), batch_size=2, num_workers=3, prefetch_factor=1)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert threading.active_count() == before


def test_arguments_are_checked(uri):
    with pytest.raises(TypeError, match="reads a GeometryStream"):
        StreamLoader([1, 2, 3], batch_size=2)
    with pytest.raises(ValueError, match="num_workers"):
        StreamLoader(stream(uri), batch_size=2, num_workers=-1)
