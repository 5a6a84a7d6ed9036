"""`GeometryStream`: a dataset larger than RAM streamed by row group, for DataLoader workers and ranks.

Memory is bounded by the shuffle window, not by the dataset: a worker decodes row groups until
it holds at least `shuffle_buffer` samples, hands them out in a random order, drops each as it
goes, and only then reads the next window. So at most shuffle_buffer + one row group - 1
samples are decoded at a time. With `shuffle` the order is drawn from (seed, epoch) at two
levels: row groups permuted across the dataset (partition.py), samples permuted within a
window. A reservoir buffer was measured too: its samples keep their whole row group alive, so
its memory wandered upwards with the dataset's length (bench/RESULTS.md, "Loader").

Mid-epoch resume (stream_state.py): with `with_index=True` each sample carries `sample_index`,
its row in the pinned version; the consumer reports what it used and saves the state::

    for batch in loader:
        step(batch)
        stream.record(batch["sample_index"])
        if time_to_save:
            save({"model": ..., "stream": stream.state_dict()})   # every rank calls it under DDP
    ...
    stream.load_state_dict(saved["stream"])    # then iterate: the rest of that epoch

On the same number of ranks and workers each worker yields exactly the rest of its samples in
the same order; on another number (elastic), the rest is shared anew, every sample once.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from gdl_data.loader.partition import Slice, worker_slices
from gdl_data.loader.row_groups import RowGroupSource, check_int
from gdl_data.loader.shard_cache import Prefetcher
from gdl_data.loader.stream_state import EpochProgress


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world_size) from the arguments, else from torch.distributed, else (0, 1)."""
    if (rank is None) != (world_size is None):
        raise ValueError("give both rank and world_size, or neither (then they come from "
                         "torch.distributed when it is initialised)")
    if rank is None:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    world_size = check_int("world_size", world_size, 1)
    rank = check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}); got {rank}")
    return rank, world_size


class GeometryStream(IterableDataset):
    """Stream a stored dataset as dicts of tensors, split across DataLoader workers and ranks.

    Args:
        uri: dataset folder or fsspec URI.
        version: dataset version; None: the current one when the stream is created (pinned).
        columns: column names to read (None: all); unread columns cost no I/O.
        transform: optional `f(sample) -> sample`, applied in the worker after decoding.
        shuffle: shuffle each epoch (default False: dataset order, one row group at a time).
        seed: shuffle seed (default 0). The order is a function of (seed, epoch, world_size,
            num_workers) only.
        shuffle_buffer: samples shuffled together by each worker, i.e. held in memory; rounded
            up to whole row groups (default 128: two row groups of 64).
        rank, world_size: this process's share; None (default): from torch.distributed if it is
            initialised when the stream is created, else the whole dataset.
        pad_ranks: repeat one sample on ranks that get one fewer, so that all ranks yield the
            same count (default False: no sample is ever repeated). See partition.py.
        cache_dir: keep decoded row groups as memory-mapped Arrow files in this local folder
            (decoded_cache.py): later epochs copy nothing. Default None: read Parquet each time.
        shard_cache: for a remote dataset (s3://, ...): a local folder where whole shards are
            kept, at most `shard_cache_bytes` (default 8 GiB), shared safely by workers, ranks and
            jobs; each worker downloads `prefetch_shards` shards (default 2) ahead of the one it
            reads (shard_cache.py). Ignored for a local dataset. Default None: ranged reads.
        with_index: add `sample_index` (int64 scalar), the sample's row in the version, which
            `record` takes to make the stream resumable mid-epoch (module docstring).

    Call `set_epoch(e)` before each epoch for a new order (as with DistributedSampler);
    it reaches persistent workers too; calling it again with the epoch in progress (e.g. after
    `load_state_dict`) keeps that epoch's progress. Each sample's tensors are its own (read
    afresh every epoch: a shard mapping reused from an earlier epoch has every page a consumer
    wrote to put back first, storage/pages.py MappingCache), so a transform may change them in place.
    """

    def __init__(self, uri: str, version: int | None = None, columns: Sequence[str] | None = None,
                 transform: Callable[[dict[str, Any]], Any] | None = None, *, shuffle: bool = False,
                 seed: int = 0, shuffle_buffer: int = 128,
                 rank: int | None = None, world_size: int | None = None, pad_ranks: bool = False,
                 cache_dir: str | os.PathLike | None = None, shard_cache: str | os.PathLike | None = None,
                 shard_cache_bytes: int = 8 << 30, prefetch_shards: int = 2, with_index: bool = False):
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be a callable sample -> sample; got {transform!r}")
        self.source = RowGroupSource(uri, version, columns, cache_dir, shard_cache, shard_cache_bytes)
        self.prefetch_shards = check_int("prefetch_shards", prefetch_shards, 0)
        self.transform = transform
        self.shuffle = bool(shuffle)
        self.seed = check_int("seed", seed, 0)
        self.shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer, 1)
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.pad_ranks = bool(pad_ranks)
        self.with_index = bool(with_index)
        # Shared memory, so that set_epoch and load_state_dict reach persistent workers.
        self.progress = EpochProgress(len(self.source), self.world_size)

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    def set_epoch(self, epoch: int) -> None:
        self.progress.set_epoch(epoch)

    def record(self, sample_index: Any) -> None:
        """The consumer has used these samples (a `sample_index` value or a batch of them)."""
        self.progress.record(sample_index)

    def _settings(self) -> dict[str, Any]:
        """What a saved state must match: the data (its shards' names are content hashes) and
        the settings that decide the order."""
        shards = json.dumps([s["path"] for s in self.source.store.manifest["shards"]])
        return {"data": hashlib.sha256(shards.encode()).hexdigest()[:16], "seed": self.seed,
                "shuffle": self.shuffle, "shuffle_buffer": self.shuffle_buffer}

    def state_dict(self) -> dict[str, Any]:
        """Epoch, consumed and excluded flags (bool tensors), the plan, the settings; loadable
        with torch.load(weights_only=True). Under torch.distributed it merges every rank's
        record, so all ranks must call it (a collective); rank 0 saves it."""
        if self.pad_ranks:
            raise ValueError("a pad_ranks stream repeats a sample, so its progress cannot be told by "
                             "sample; resume DDP without padding (wrap the loop in model.join())")
        return self.progress.state_dict(self._settings())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the saved epoch: the next iteration yields only what was not consumed."""
        self.progress.load_state_dict(state, self._settings(), self.world_size)

    def slices(self, worker: int = 0, num_workers: int = 1) -> list[Slice]:
        """The row-group slices one worker of this rank reads this epoch, in reading order."""
        return worker_slices(self.source.groups, shuffle=self.shuffle, seed=self.seed,
                             epoch=self.epoch, rank=self.rank, world_size=self.world_size,
                             worker=worker, num_workers=num_workers, pad_ranks=self.pad_ranks,
                             excluded=self.progress.excluded_mask())

    def __len__(self) -> int:
        """Samples this rank has still to yield this epoch (all its workers together)."""
        consumed = self.progress.consumed.numpy()
        return sum(int((~consumed[s.group.start + s.lo:s.group.start + s.hi]).sum()) for s in self.slices())

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        return self.worker_samples(*((info.id, info.num_workers) if info is not None else (0, 1)))

    def worker_samples(self, worker: int, num_workers: int) -> Iterator[Any]:
        """What DataLoader worker `worker` of `num_workers` yields this epoch (also what a
        StreamLoader thread reads, stream_loader.py)."""
        self.progress.start(num_workers)
        slices = self.slices(worker, num_workers)
        self.source.own_filesystem()   # before the prefetch thread uses it
        prefetch = self.source.prefetcher([s.group.shard for s in slices], self.prefetch_shards)
        try:
            if self.shuffle:
                rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
                items = self._shuffled(slices, rng, prefetch)
            else:
                items = (item for s in slices for item in self._read(s, prefetch))
            consumed = self.progress.consumed.numpy()
            for index, sample in items:
                if consumed[index]:   # used before a resume: skipped, in the place it had
                    continue
                if self.with_index:
                    sample["sample_index"] = torch.tensor(index, dtype=torch.int64)
                yield sample if self.transform is None else self.transform(sample)
        finally:
            if prefetch is not None:
                prefetch.close()

    def _read(self, s: Slice, prefetch: Prefetcher | None = None) -> list[tuple[int, dict[str, Any] | None]]:
        """(sample index, sample) of a slice; a slice whose samples were all consumed is not read."""
        if prefetch is not None:
            prefetch.reading(s.group.shard)
        first = s.group.start + s.lo
        indices = range(first, first + s.rows)
        if self.progress.consumed[first:first + s.rows].all():
            return [(i, None) for i in indices]
        return list(zip(indices, self.source.read(s.group, s.lo, s.hi)))

    def _shuffled(self, slices: list[Slice], rng: np.random.Generator,
                  prefetch: Prefetcher | None) -> Iterator[tuple[int, Any]]:
        window: list[tuple[int, Any] | None] = []
        for i, s in enumerate(slices):
            window += self._read(s, prefetch)
            if len(window) >= self.shuffle_buffer or i == len(slices) - 1:
                for slot in rng.permutation(len(window)):
                    item, window[slot] = window[slot], None   # the window lets go as it yields
                    yield item
                window = []
