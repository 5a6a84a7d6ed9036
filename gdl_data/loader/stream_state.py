"""How far a GeometryStream's epoch got: what `state_dict()` saves and `load_state_dict()` resumes.

The state is sample-space, not a count: `consumed` marks (one flag per sample of the pinned
version) every sample the consumer has reported as used (`GeometryStream.record`), and
`excluded` the samples the current plan left out because an earlier run had consumed them.
A DataLoader fetches ahead (workers, prefetch_factor, pin threads), so what a stream has
yielded is not what was used; only the consumer knows, hence `record`.

Resuming (`load_state_dict`, then iterate):
- on the same number of ranks and DataLoader workers, the plan is the saved one (partition.py,
  same `excluded`) and each worker skips what was consumed: it yields exactly the rest of what
  it would have yielded, in the same order. (torch's DataLoader restarts its round-robin over
  workers at worker 0, so batches of different workers may interleave differently.)
- on another number of ranks or workers (elastic), everything consumed becomes `excluded` and
  the rest of the epoch is shared anew: every remaining sample is yielded exactly once overall.

The flags live in shared memory, so a state loaded in the main process reaches DataLoader
workers that are already running (persistent_workers), as `set_epoch` does.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from gdl_data.loader.row_groups import check_int


def _shared(size: int) -> torch.Tensor:
    return torch.zeros(size, dtype=torch.bool).share_memory_()


class EpochProgress:
    """Epoch number, consumed and excluded flags, and the (world_size, num_workers) of the plan."""

    def __init__(self, size: int, world_size: int):
        self.size = size
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._plan = torch.tensor([world_size, 0], dtype=torch.int64).share_memory_()  # 0: not started
        self.consumed, self.excluded = _shared(size), _shared(size)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """A new epoch starts from nothing consumed; the epoch in progress keeps its progress."""
        epoch = check_int("epoch", epoch, 0)
        if epoch != self.epoch:
            self._epoch.fill_(epoch)
            self.consumed.zero_()
            self.excluded.zero_()

    def excluded_mask(self) -> np.ndarray | None:
        mask = self.excluded.numpy()
        return mask if mask.any() else None

    def record(self, indices: Any) -> None:
        self.consumed[torch.as_tensor(indices, dtype=torch.long).reshape(-1)] = True

    def state_dict(self, extra: dict[str, Any]) -> dict[str, Any]:
        consumed = self.consumed.clone()
        if dist.is_available() and dist.is_initialized():   # every rank's, so rank 0 can save it
            as_int = consumed.to(torch.uint8)
            dist.all_reduce(as_int, op=dist.ReduceOp.MAX)
            consumed = as_int.bool()
        return {**extra, "epoch": self.epoch, "size": self.size, "plan": self._plan.tolist(),
                "consumed": consumed, "excluded": self.excluded.clone()}

    def load_state_dict(self, state: dict[str, Any], extra: dict[str, Any], world_size: int) -> None:
        """Continue the saved epoch; on another world size, re-share what is left (elastic)."""
        for key, value in {**extra, "size": self.size}.items():
            if state[key] != value:
                raise ValueError(f"the saved stream state has {key}={state[key]!r}, this stream "
                                 f"{value!r}: it belongs to another dataset version or settings")
        self._epoch.fill_(check_int("epoch", state["epoch"], 0))
        self.consumed.copy_(state["consumed"])
        saved_world, saved_workers = state["plan"]
        if saved_world == world_size:
            self.excluded.copy_(state["excluded"])
            self._plan.copy_(torch.tensor([world_size, saved_workers]))
        else:
            self.excluded.copy_(state["consumed"] | state["excluded"])
            self._plan.copy_(torch.tensor([world_size, 0]))

    def start(self, num_workers: int) -> None:
        """Where the stream is iterated, before planning: a plan saved for another number of
        workers is re-shared (everything consumed becomes excluded). Idempotent across workers:
        the flags are updated before the plan's worker count, so every worker plans alike."""
        saved = int(self._plan[1])
        if saved not in (0, num_workers):
            self.excluded.logical_or_(self.consumed)
        self._plan[1] = num_workers
