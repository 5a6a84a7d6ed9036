"""Feeding the GPU: pinned host memory, non-blocking copies, and a copy-ahead iterator.

`DataLoader(..., pin_memory=True)` pins every tensor of a batch dict (sparse ones too) in its
pin thread; `to_device(batch, "cuda")` then copies without blocking the host. `prefetch` copies
the next batch on a side CUDA stream while the model works on the current one.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch


def _map_tensors(obj: Any, fn) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def pin(batch: Any) -> Any:
    """The batch with every tensor in page-locked memory (needs CUDA; a no-op without it)."""
    if not torch.cuda.is_available():
        return batch
    return _map_tensors(batch, lambda t: t if t.is_pinned() else t.pin_memory())


def to_device(batch: Any, device: str | torch.device, non_blocking: bool = True) -> Any:
    """Every tensor of a (nested) batch on `device`; strings and other values unchanged.

    Args:
        batch: a tensor, or dicts / lists / tuples holding tensors.
        device: target device, e.g. "cuda", "cuda:1", "cpu".
        non_blocking: asynchronous host-to-device copies (default True); they overlap with
            host work only when the source is pinned (DataLoader pin_memory=True or `pin`).
    """
    device = torch.device(device)
    return _map_tensors(batch, lambda t: t.to(device, non_blocking=non_blocking))


def prefetch(batches: Iterable[Any], device: str | torch.device) -> Iterator[Any]:
    """Yield `batches` on `device`, copying batch i+1 on a side stream while batch i is used.

    On CUDA the copies run on their own stream and each batch is handed over only after its
    copy has finished on that stream (the consumer's stream waits for it). On other devices this
    is `to_device` on each batch.
    """
    device = torch.device(device)
    if device.type != "cuda":
        for batch in batches:
            yield to_device(batch, device)
        return
    side = torch.cuda.Stream(device)
    pending = None
    for batch in batches:
        with torch.cuda.stream(side):
            moved = to_device(batch, device)
            copied = torch.cuda.Event()
            copied.record(side)
        if pending is not None:
            yield _handover(*pending, device)
        pending = (moved, copied)
    if pending is not None:
        yield _handover(*pending, device)


def _handover(batch: Any, copied: torch.cuda.Event, device: torch.device) -> Any:
    current = torch.cuda.current_stream(device)
    current.wait_event(copied)   # this batch's copy only, not the next one's, already queued

    def used_on_current(t: torch.Tensor) -> torch.Tensor:
        # the caching allocator must not reuse this memory until the consumer's stream is done
        for part in ((t._indices(), t._values()) if t.is_sparse else (t,)):
            part.record_stream(current)
        return t

    return _map_tensors(batch, used_on_current)
