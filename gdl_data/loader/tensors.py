"""Decoded Arrow rows -> torch tensors, without a Python loop over elements.

`storage` decodes each stored array as a numpy view into the Arrow buffer that pyarrow filled
while reading the row group (np.frombuffer + reshape, no copy). Here each view becomes a tensor
with `torch.from_numpy`, which shares that memory: zero copies from Parquet page to tensor
beyond the one pyarrow makes while decoding. Uncompressed array columns are not decoded at all:
storage hands out views of a private memory map of the shard (storage/pages.py), so their
tensors are the page cache's pages until written to. A view that is misaligned for its dtype or
read-only is copied once, so a tensor never aliases memory it may not write.

Each tensor gets its own storage covering only its bytes, so a DataLoader worker that sends a
sample to the main process moves that sample's bytes, not the whole row group's buffer.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

# numpy kinds torch can hold; strings (sample_id, source, domain, node_ids) stay as they are.
NUMERIC_KINDS = "biuf"


def as_tensor(value: Any) -> Any:
    """A numeric numpy array or scalar as a tensor sharing its memory; anything else unchanged."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in NUMERIC_KINDS:
            return value
        if not (value.flags.aligned and value.flags.writeable and value.flags.c_contiguous):
            value = np.ascontiguousarray(value).copy()   # the "one copy at most" case
        return torch.from_numpy(value)
    if isinstance(value, np.generic) and value.dtype.kind in NUMERIC_KINDS:
        return torch.from_numpy(np.array(value))
    return value


def sample_tensors(row: Mapping[str, Any], memo: dict[int, Any] | None = None) -> dict[str, Any]:
    """One decoded row (dict of numpy arrays and strings) with every numeric array as a tensor.

    `memo` (id -> tensor) converts an array that several rows share (a shared grid's geometry,
    storage/geometry.py) once, so those rows share one tensor instead of a copy each."""
    if memo is None:
        return {name: as_tensor(value) for name, value in row.items()}
    out = {}
    for name, value in row.items():
        if not isinstance(value, np.ndarray):
            out[name] = as_tensor(value)
        elif id(value) in memo:
            out[name] = memo[id(value)][1]
        else:
            out[name] = as_tensor(value)
            memo[id(value)] = (value, out[name])    # the array is held so its id stays unique
    return out
