"""`collate_padded`: a list of samples -> dense (B, n_max, ...) tensors and a node mask.

For models that want dense batches (transformers over nodes, dense spectral layers). Columns
keep the roles of collate.py's table, batched densely instead of concatenated:

| role | in the padded batch |
| --- | --- |
| node | (B, n_max, ...), zeros past each sample's n; `mask` (B, n_max) is True on real nodes |
| node, last axis (geo_dist) | (B, s_max, n_max), zeros outside the sample's (s, n) |
| index (faces, edge_index, ...) | (B, f_max, 3) / (B, 2, e_max) / (B, s_max): the sample's own node ids (no offsets), -1 where padded |
| edge | (B, e_max, ...), zeros past each sample's e; `edge_mask` (B, e_max) |
| sparse operator X | one sparse COO tensor (B, n_max, n_max): `torch.bmm(X, h)` applies it per sample |
| per sample, text | as in collate_graphs: stacked (B, ...) or a list |

Also `num_nodes` (B,) int64 (the count of each sample's nodes).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from gdl_data.loader.collate import (common_keys, dense_columns, num_nodes, operator_index, sample_label,
                                     sparse_operators, stack)


def pad(values: Sequence[torch.Tensor], fill: float | int = 0,
        sizes: Mapping[int, int] | None = None) -> torch.Tensor:
    """Stack tensors of one ndim, each axis padded with `fill` to its longest (or `sizes[axis]`)."""
    if len({v.ndim for v in values}) > 1:
        raise ValueError(f"cannot pad arrays of shapes {sorted({tuple(v.shape) for v in values})} "
                         f"together: their numbers of axes differ")
    shape = [max(v.shape[a] for v in values) for a in range(values[0].ndim)]
    for axis, size in (sizes or {}).items():
        shape[axis] = size
    out = torch.full((len(values), *shape), fill, dtype=values[0].dtype)
    for b, v in enumerate(values):
        out[(b, *(slice(0, d) for d in v.shape))] = v
    return out


def lengths_mask(lengths: Sequence[int]) -> torch.Tensor:
    return torch.arange(max(lengths, default=0)) < torch.as_tensor(lengths)[:, None]


def collate_padded(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch samples densely, as the module table says.

    Args:
        samples: dicts from GeometryDataset / GeometryStream, all with the same columns.

    Returns:
        dict of padded columns plus `mask` (B, n_max) bool and `num_nodes` (B,) int64, and
        `edge_mask` (B, e_max) bool when edge-level columns are present.
    """
    keys = common_keys(samples)
    counts = [num_nodes(s, sample_label(samples, i)) for i, s in enumerate(samples)]
    n_max = max(counts)
    out: dict[str, Any] = {"mask": lengths_mask(counts), "num_nodes": torch.as_tensor(counts)}
    operators = sparse_operators(keys)
    for key, values, kind in dense_columns(samples, keys, counts, operators):
        if kind == "node":
            out[key] = pad(values, sizes={0: n_max})
        elif kind == "node_last":
            out[key] = pad(values, sizes={values[0].ndim - 1: n_max})
        elif kind == "index":
            out[key] = pad(values, fill=-1)
        elif kind == "edge":
            out[key] = pad(values)
            out["edge_mask"] = lengths_mask([v.shape[0] for v in values])
        elif kind == "sample":
            same = len({(tuple(v.shape), v.dtype) for v in values}) == 1
            out[key] = stack(values) if same else values
        else:
            out[key] = values
    for op in operators:
        index, lengths = operator_index(samples, op, counts)
        owner = torch.repeat_interleave(torch.arange(len(samples)), torch.as_tensor(lengths))
        index = torch.cat([owner[None].to(index.dtype), index])
        value = torch.cat([s[op + "_value"] for s in samples])
        out[op] = torch.sparse_coo_tensor(index, value, (len(samples), n_max, n_max),
                                          check_invariants=False)
    return out
