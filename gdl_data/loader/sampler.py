"""`GlobalBatchSampler`: one epoch's batches in a global order that does not depend on the ranks.

The plan (the same in every process; it depends only on the arguments):

1. The epoch's order: `indices` permuted by `numpy.random.default_rng([seed, epoch])` (with
   `shuffle`), else as given.
2. Global batch j is positions `[j*G, (j+1)*G)` of that order (G = `batch_size`, the batch of
   the whole job); rank r of W takes the contiguous part `[ceil(r*b/W), ceil((r+1)*b/W))` of a
   global batch of b samples. Rank 0 is never empty; a rank whose part of the last, short
   global batch is empty gets no batch there (DDP loops wrap in `model.join()`).
3. The state is `(epoch, position)`: how many samples of the order the job has consumed. It
   means the same for any W, so a job resumed on another number of ranks (or DataLoader
   workers) continues at the same position: every sample of the epoch is seen exactly once,
   and with the same W the batches are the ones an uninterrupted run would have drawn.

So one process with batch G and W processes with batch G see the same samples at the same
steps; DDP averages over ranks what one process averages over the batch (pipelines/training.py
weighs each rank's loss by its share). This is DistributedSampler's job, made resumable and
elastic in the way MosaicML streaming's sample-space resumption is (not by rank-local counts).

The consumer advances the position with `step()` after it has used a batch: a DataLoader
fetches batches ahead (workers, prefetch), so what the sampler handed out is not what was used.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from gdl_data.loader.row_groups import check_int
from gdl_data.loader.stream_dataset import resolve_rank


def rank_part(size: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous part of `size` items: front-loaded, so rank 0 is never empty."""
    return -(-rank * size // world_size), -(-(rank + 1) * size // world_size)


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for this rank; resumable and elastic (module docstring).

    Args:
        indices: the dataset indices an epoch covers (e.g. a training split).
        batch_size: the global batch G, summed over all ranks.
        shuffle: a new order each epoch from (seed, epoch) (default True).
        seed: shuffle seed.
        rank, world_size: this process's place; None: from torch.distributed, else (0, 1).
    """

    def __init__(self, indices: Sequence[int], batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None):
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.shuffle, self.seed = bool(shuffle), check_int("seed", seed, 0)
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.epoch, self.position = 0, 0
        self._digest = hashlib.sha256(self.indices.tobytes()).hexdigest()[:16]

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` at its beginning."""
        self.epoch, self.position = check_int("epoch", epoch, 0), 0

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        return self.indices[np.random.default_rng([self.seed, self.epoch]).permutation(len(self.indices))]

    def global_batch(self, position: int | None = None) -> np.ndarray:
        """The global batch that starts at `position` (default: the next one to consume)."""
        start = self.position if position is None else position
        return self.order()[start:start + self.batch_size]

    def __len__(self) -> int:
        """Batches this rank yields from the current position to the end of the epoch."""
        left = len(self.indices) - self.position
        full, tail = divmod(left, self.batch_size)
        return full * self._has_part(self.batch_size) + int(tail > 0 and self._has_part(tail))

    def _has_part(self, size: int) -> bool:
        lo, hi = rank_part(size, self.world_size, self.rank)
        return hi > lo

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for start in range(self.position, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            lo, hi = rank_part(len(batch), self.world_size, self.rank)
            if hi > lo:
                yield batch[lo:hi].tolist()

    def step(self) -> int:
        """The consumer used the next global batch: advance past it; returns its size."""
        size = min(self.batch_size, len(self.indices) - self.position)
        if size <= 0:
            raise ValueError(f"epoch {self.epoch} has no batch left to consume; call set_epoch")
        self.position += size
        return size

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "shuffle": self.shuffle, "size": len(self.indices), "indices": self._digest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at a saved position, on any number of ranks; refuses another sample set."""
        mine = self.state_dict()
        for key in ("seed", "shuffle", "size", "indices"):
            if state[key] != mine[key]:
                raise ValueError(f"the saved sampler state has {key}={state[key]!r}, this sampler "
                                 f"{mine[key]!r}: it belongs to other data or another seed")
        position = check_int("position", state["position"], 0)
        if position > len(self.indices):
            raise ValueError(f"saved position {position} is past the epoch's {len(self.indices)} samples")
        self.epoch, self.position = check_int("epoch", state["epoch"], 0), position
