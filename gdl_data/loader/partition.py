"""Which samples each DataLoader worker of each rank reads in an epoch.

The plan, the same in every process (it depends only on the arguments):

1. Order the row groups: dataset order, or with `shuffle` a permutation drawn from
   `numpy.random.default_rng([seed, epoch])`.
2. Lay the samples of the ordered groups end to end, N in all, and give rank r of W the
   contiguous run `[r*N//W, (r+1)*N//W)`; give worker w of K within the rank the same share of
   the rank's run. Every sample lands in exactly one (rank, worker) and runs differ by at most one
   sample. A run starts and ends at most mid-group, so a worker reads whole row groups except
   at its two ends.
3. Resumed epochs (GeometryStream.load_state_dict on another number of ranks or workers): the
   samples consumed before are `excluded`: each ordered group keeps only its runs of other
   rows, and step 2 shares what is left, so every remaining sample still lands exactly once.
4. Uneven counts: with N not a multiple of W, ranks hold N//W or N//W + 1 samples and none is
   dropped or repeated. DDP loops that need equal step counts pass `pad_ranks=True`, which
   lets each short rank repeat the first sample of its own run once (as DistributedSampler
   pads); that repetition is the only one and it is opt-in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gdl_data.loader.row_groups import RowGroup


@dataclass(frozen=True)
class Slice:
    """Rows `lo .. hi-1` (positions inside the group) of one row group."""

    group: RowGroup
    lo: int
    hi: int

    @property
    def rows(self) -> int:
        return self.hi - self.lo


def share(total: int, parts: int, part: int) -> tuple[int, int]:
    """Balanced contiguous share `[lo, hi)` of `total` items for `part` of `parts`."""
    return part * total // parts, (part + 1) * total // parts


def take(slices: Sequence[Slice], lo: int, hi: int) -> list[Slice]:
    """Samples `lo .. hi-1` of the sequence that `slices` lays end to end."""
    out, pos = [], 0
    for s in slices:
        a, b = max(lo, pos), min(hi, pos + s.rows)
        if a < b:
            out.append(Slice(s.group, s.lo + a - pos, s.lo + b - pos))
        pos += s.rows
        if pos >= hi:
            break
    return out


def epoch_groups(groups: Sequence[RowGroup], shuffle: bool, seed: int, epoch: int) -> list[RowGroup]:
    if not shuffle:
        return list(groups)
    order = np.random.default_rng([seed, epoch]).permutation(len(groups))
    return [groups[i] for i in order]


def without(slices: Sequence[Slice], excluded: np.ndarray | None) -> list[Slice]:
    """The slices cut into their runs of rows whose sample index is not `excluded` (a bool mask
    over the dataset's samples)."""
    if excluded is None:
        return list(slices)
    out = []
    for s in slices:
        first = s.group.start + s.lo
        kept = ~excluded[first:s.group.start + s.hi]
        edges = np.flatnonzero(np.diff(np.concatenate([[False], kept, [False]]).astype(np.int8)))
        out += [Slice(s.group, s.lo + a, s.lo + b) for a, b in zip(edges[::2], edges[1::2])]
    return out


def rank_slices(groups: Sequence[RowGroup], *, shuffle: bool, seed: int, epoch: int,
                rank: int, world_size: int, pad_ranks: bool = False,
                excluded: np.ndarray | None = None) -> list[Slice]:
    """What rank `rank` of `world_size` reads this epoch, in reading order."""
    ordered = without([Slice(g, 0, g.rows) for g in epoch_groups(groups, shuffle, seed, epoch) if g.rows],
                      excluded)
    total = sum(s.rows for s in ordered)
    mine = take(ordered, *share(total, world_size, rank))
    if pad_ranks and total % world_size and sum(s.rows for s in mine) < -(-total // world_size):
        mine += take(mine or ordered, 0, 1)
    return mine


def worker_slices(groups: Sequence[RowGroup], *, shuffle: bool, seed: int, epoch: int,
                  rank: int, world_size: int, worker: int, num_workers: int,
                  pad_ranks: bool = False, excluded: np.ndarray | None = None) -> list[Slice]:
    """What worker `worker` of `num_workers` in rank `rank` reads this epoch, in reading order."""
    mine = rank_slices(groups, shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
                       world_size=world_size, pad_ranks=pad_ranks, excluded=excluded)
    return take(mine, *share(sum(s.rows for s in mine), num_workers, worker))
