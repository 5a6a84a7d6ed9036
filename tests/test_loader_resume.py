"""Issue 14: GeometryStream.state_dict / load_state_dict: mid-epoch resume, exact on the same
topology, every sample once on another (elastic), through torch.save(weights_only)."""
import io

import pytest
import torch
from torch.utils.data import DataLoader

from gdl_data.loader import GeometryStream, collate_graphs
from loader_samples import make_dataset

COUNT = 41   # shards of 7 and 9, row groups of 3: nothing divides evenly


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("resume") / "ds")
    make_dataset(path, COUNT)
    return path


def stream(uri, **kw):
    s = GeometryStream(uri, columns=["sample_id", "pos"], shuffle=True, seed=4, shuffle_buffer=6,
                       with_index=True, **kw)
    s.set_epoch(2)
    return s


def saved(state):
    """The state through a checkpoint file as a training loop writes it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


@pytest.mark.parametrize("stop", [1, 17, 40])
def test_resumed_on_the_same_topology_the_stream_yields_exactly_the_rest_in_order(uri, stop):
    full = [int(s["sample_index"]) for s in stream(uri)]
    assert sorted(full) == list(range(COUNT)) and full != sorted(full)
    first = stream(uri)
    for sample in list(first)[:stop]:
        first.record(sample["sample_index"])
    again = stream(uri)
    again.load_state_dict(saved(first.state_dict()))
    again.set_epoch(2)   # the epoch in progress: its progress is kept
    assert len(again) == COUNT - stop
    assert [int(s["sample_index"]) for s in again] == full[stop:]
    again.set_epoch(3)   # the next epoch starts from nothing consumed
    assert len(again) == COUNT


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_batches_from_workers_resume_every_sample_once(uri):
    first = stream(uri)
    loader = DataLoader(first, batch_size=4, num_workers=2, collate_fn=collate_graphs)
    used = []
    for i, batch in enumerate(loader):   # the loader fetched ahead of the 5 batches used
        if i == 5:
            break
        used += batch["sample_index"].tolist()
        first.record(batch["sample_index"])
    again = stream(uri)
    again.load_state_dict(saved(first.state_dict()))
    rest = [i for b in DataLoader(again, batch_size=4, num_workers=2, collate_fn=collate_graphs)
            for i in b["sample_index"].tolist()]
    assert sorted(used + rest) == list(range(COUNT))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers_after", [0, 3])
def test_elastic_two_ranks_to_one_sees_every_sample_exactly_once(uri, workers_after):
    ranks = [stream(uri, rank=r, world_size=2) for r in range(2)]
    used = []
    for rank, s in enumerate(ranks):
        for j, batch in enumerate(DataLoader(s, batch_size=3, num_workers=2, collate_fn=collate_graphs)):
            if j == 2 + rank:
                break
            used += batch["sample_index"].tolist()
            ranks[0].record(batch["sample_index"])   # as state_dict's all_reduce merges them under DDP
    assert len(used) == 15
    one = stream(uri)
    one.load_state_dict(saved(ranks[0].state_dict()))
    assert len(one) == COUNT - 15
    loader = DataLoader(one, batch_size=None, num_workers=workers_after)
    rest = [int(s["sample_index"]) for s in loader]
    assert sorted(used + rest) == list(range(COUNT))


def test_a_state_of_other_data_or_settings_is_refused(uri, tmp_path):
    state = stream(uri).state_dict()
    with pytest.raises(ValueError, match="seed=4.*5"):
        GeometryStream(uri, shuffle=True, seed=5, shuffle_buffer=6).load_state_dict(state)
    other = str(tmp_path / "other")
    make_dataset(other, COUNT - 1)
    with pytest.raises(ValueError, match="data="):
        GeometryStream(other, shuffle=True, seed=4, shuffle_buffer=6).load_state_dict(state)
    with pytest.raises(ValueError, match="pad_ranks"):
        GeometryStream(uri, rank=0, world_size=2, pad_ranks=True).state_dict()
