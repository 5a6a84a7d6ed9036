"""`collate_graphs`: a list of samples -> one PyG-style batch (a dict of tensors).

How each column is batched (B samples, N nodes in all; n, e, s, nnz per sample):

| role | columns | per sample | in the batch |
| --- | --- | --- | --- |
| node | pos, x, z, normals, frames, mass, evecs, values; y when y.shape[0] == n | (n, ...) | concatenated: (N, ...) |
| node, last axis | geo_dist | (s, n) | concatenated along the last axis: (s, N) (same s in every sample) |
| index | faces (f, 3), edge_index (2, e), bond_index (2, b), geo_sources (s,) | node ids | concatenated, each plus its sample's first node: (F, 3), (2, E), ... |
| edge | edge_dist, transport, logmap | (e, ...) | concatenated: (E, ...), aligned with edge_index |
| sparse operator | X stored as X_index (2, nnz) + X_value (nnz,), e.g. grad_x, grad_y | (n, n) | one block-diagonal sparse COO tensor X: (N, N) |
| per sample | evals, nside, num_nodes, y otherwise, any other column | (...) | stacked: (B, ...); a list of B where shapes differ |
| text | sample_id, source, domain, node_ids | str / array of str | a list of B |
| added | batch, ptr | | batch (N,): each node's sample; ptr (B+1,): node offsets |
| shared | with `geometry_key`: the domain's structure and op outputs (`shared_columns`) | the same arrays for every sample on one domain | once per distinct key: `geometry` (a list of G dicts, in order of first use) and `geometry_index` (B,): each sample's entry |

Samples that share a domain (HEALPix maps on one grid, windows of signals on one graph; they
carry `geometry_key` when it was read) are batched with their shared arrays once: a batch of 64
maps on one grid holds the grid's `pos`, `evecs`, `edge_index`, ... once, in `geometry[0]`,
beside the 64 maps' `values` (N = 64 n rows). `expand_geometry(batch)` (and `to_pyg`) gives the
per-sample layout above, as if every sample carried its own copy.

A spectral layer then works on the whole batch with segment ops, no loop over samples; e.g.
the coefficients of a node signal h (N, c) in each sample's eigenbasis and back::

    w = b["evecs"][:, :, None] * (b["mass"][:, None] * h)[:, None, :]           # (N, k, c)
    coef = torch.zeros(B, k, c).index_add_(0, b["batch"], w)                    # (B, k, c)
    h_smooth = (b["evecs"][:, :, None] * coef[b["batch"]]).sum(1)               # (N, c)

Inside a DataLoader worker the concatenations are written straight into shared memory, so the
batch reaches the main process without another copy (as torch's default_collate does).
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch
from torch.utils.data import get_worker_info

NODE = ("pos", "x", "z", "normals", "frames", "mass", "evecs", "values")
NODE_LAST_AXIS = ("geo_dist",)
INDEX_AXIS = {"faces": 0, "edge_index": 1, "bond_index": 1, "geo_sources": 0}
EDGE = ("edge_dist", "transport", "logmap")
TEXT = ("sample_id", "source", "domain", "node_ids")


def num_nodes(sample: Mapping[str, Any], where: str = "sample") -> int:
    """n of a sample: the length of its first node-level column, else its `num_nodes` column."""
    for key in NODE:
        if key in sample:
            return int(sample[key].shape[0])
    if "num_nodes" in sample:
        return int(sample["num_nodes"])
    raise ValueError(f"{where}: cannot tell its number of nodes; read one of {list(NODE)} or "
                     f"'num_nodes' too (columns=[...])")


def sparse_operators(keys: Sequence[str]) -> list[str]:
    """Names X stored as the pair X_index (2, nnz) and X_value (nnz,)."""
    return [k[:-6] for k in keys if k.endswith("_index") and k not in INDEX_AXIS
            and k[:-6] + "_value" in keys]


def role(key: str, values: Sequence[Any], counts: Sequence[int]) -> str:
    """Which row of the module table a column falls in, for this batch."""
    if key in TEXT or not all(isinstance(v, torch.Tensor) for v in values):
        return "text"
    if key in NODE:
        return "node"
    if key == "y":   # node labels when every sample has one row per node, else graph labels
        node = all(v.ndim >= 1 and v.shape[0] == n for v, n in zip(values, counts))
        return "node" if node else "sample"
    if key in NODE_LAST_AXIS:
        return "node_last"
    if key in INDEX_AXIS:
        return "index"
    if key in EDGE:
        return "edge"
    return "sample"


def sample_label(samples: Sequence[Mapping[str, Any]], i: int) -> str:
    sid = samples[i].get("sample_id")
    return f"sample {i}" + (f" ({sid})" if isinstance(sid, str) else "")


def dense_columns(samples: Sequence[Mapping[str, Any]], keys: Sequence[str], counts: Sequence[int],
                  operators: Sequence[str]) -> Iterator[tuple[str, list[Any], str]]:
    """(key, the samples' values, role) for every column that is not part of a sparse operator."""
    for key in keys:
        if any(key in (op + "_index", op + "_value") for op in operators):
            continue
        values = [s[key] for s in samples]
        yield key, values, role(key, values, counts)


def common_keys(samples: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column names, which every sample must have (a column absent in some is ambiguous)."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    keys = list(samples[0])
    for i, s in enumerate(samples):
        if set(s) != set(keys):
            diff = sorted(set(s) ^ set(keys))
            raise ValueError(f"{sample_label(samples, i)} differs from sample 0 in columns {diff}; "
                             f"read only columns all samples have (columns=[...]) or fill them "
                             f"in a transform")
    return keys


def _out(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor | None:
    """An empty result tensor in shared memory when collating in a DataLoader worker."""
    if get_worker_info() is None:
        return None
    numel = 1
    for d in shape:
        numel *= d
    storage = like._typed_storage()._new_shared(numel, device=like.device)
    return like.new(storage).resize_(*shape)


def cat(tensors: Sequence[torch.Tensor], dim: int = 0) -> torch.Tensor:
    shape = list(tensors[0].shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return torch.cat(list(tensors), dim, out=_out(shape, tensors[0]))


def stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack(list(tensors), 0, out=_out([len(tensors), *tensors[0].shape], tensors[0]))


def node_offsets(ptr: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Each item's sample's first node, for items laid out `lengths[b]` per sample."""
    return torch.repeat_interleave(ptr[:-1], torch.as_tensor(lengths, dtype=torch.long))


GEOMETRY_KEY = "geometry_key"


def shared_columns() -> set[str]:
    """Columns a sample with `geometry_key` shares with every sample of its key: its domain's
    structure and every op output (pipelines/geometry.py). The union over domains is safe: a
    domain's samples never hold another domain's structure columns."""
    from gdl_data.domains import STRUCTURE
    from gdl_data.ops import list_ops
    return set().union(*STRUCTURE.values(), *(op.outputs for op in list_ops().values()))


def collate_graphs(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch samples into one disconnected graph, as the module table says.

    Args:
        samples: dicts from GeometryDataset / GeometryStream (tensors and strings), all with the
            same columns.

    Returns:
        dict of the batched columns plus `batch` (N,) and `ptr` (B+1,), both int64; with
        `geometry_key`, the shared columns once per key in `geometry`, and `geometry_index`.
    """
    keys = common_keys(samples)
    if GEOMETRY_KEY in keys:
        return _collate_shared(samples, keys)
    counts = [num_nodes(s, sample_label(samples, i)) for i, s in enumerate(samples)]
    return _collate(samples, keys, counts)


def _collate_shared(samples: Sequence[Mapping[str, Any]], keys: list[str]) -> dict[str, Any]:
    shared = shared_columns().intersection(keys)
    first: dict[str, int] = {}
    for i, s in enumerate(samples):
        first.setdefault(s[GEOMETRY_KEY], i)
    geometry = [{k: samples[i][k] for k in keys if k in shared} for i in first.values()]
    slot = {key: g for g, key in enumerate(first)}
    counts = [num_nodes({**geometry[slot[s[GEOMETRY_KEY]]], **s}, sample_label(samples, i))
              for i, s in enumerate(samples)]
    own = [{k: v for k, v in s.items() if k not in shared} for s in samples]
    out = _collate(own, [k for k in keys if k not in shared], counts)
    out["geometry"] = geometry
    out["geometry_index"] = torch.as_tensor([slot[s[GEOMETRY_KEY]] for s in samples], dtype=torch.long)
    return out


def expand_geometry(batch: Mapping[str, Any]) -> dict[str, Any]:
    """A batch with shared geometry in the per-sample layout (each sample's copy concatenated,
    indices offset), as collate_graphs gives for samples without `geometry_key`."""
    if "geometry" not in batch:
        return dict(batch)
    index = batch["geometry_index"].tolist()
    per_sample = [batch["geometry"][g] for g in index]
    counts = (batch["ptr"][1:] - batch["ptr"][:-1]).tolist()
    expanded = _collate(per_sample, list(per_sample[0]), counts)
    out = {k: v for k, v in batch.items() if k not in ("geometry", "geometry_index")}
    out.update({k: v for k, v in expanded.items() if k not in ("batch", "ptr")})
    return out


def _collate(samples: Sequence[Mapping[str, Any]], keys: list[str], counts: list[int]) -> dict[str, Any]:
    ptr = torch.zeros(len(samples) + 1, dtype=torch.long)
    torch.cumsum(torch.as_tensor(counts, dtype=torch.long), 0, out=ptr[1:])
    out: dict[str, Any] = {"batch": torch.repeat_interleave(torch.arange(len(samples)),
                                                            torch.as_tensor(counts)),
                           "ptr": ptr}
    total = int(ptr[-1])
    operators = sparse_operators(keys)
    for key, values, kind in dense_columns(samples, keys, counts, operators):
        if kind == "node":
            for i, (v, n) in enumerate(zip(values, counts)):
                if v.ndim == 0 or v.shape[0] != n:
                    raise ValueError(f"{sample_label(samples, i)}: '{key}' has shape {tuple(v.shape)} "
                                     f"but the sample has {n} nodes")
            out[key] = cat(values, 0)
        elif kind == "node_last":
            if len({tuple(v.shape[:-1]) for v in values}) > 1:
                raise ValueError(f"'{key}' has a different number of rows across samples "
                                 f"({sorted({tuple(v.shape) for v in values})}); use collate_padded")
            out[key] = cat(values, -1)
        elif kind == "index":
            axis = INDEX_AXIS[key]
            batched = cat(values, axis)
            offsets = node_offsets(ptr, [v.shape[axis] for v in values]).to(batched.dtype)
            batched += offsets[:, None] if (axis == 0 and batched.ndim == 2) else offsets
            out[key] = batched
        elif kind == "edge":
            out[key] = cat(values, 0)
        elif kind == "sample":
            same = len({(tuple(v.shape), v.dtype) for v in values}) == 1
            out[key] = stack(values) if same else values
        else:
            out[key] = values
    for op in operators:
        index, lengths = operator_index(samples, op, counts)
        index += node_offsets(ptr, lengths).to(index.dtype)
        value = cat([s[op + "_value"] for s in samples], 0)
        out[op] = torch.sparse_coo_tensor(index, value, (total, total), check_invariants=False)
    return out


def operator_index(samples: Sequence[Mapping[str, Any]], op: str,
                   counts: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
    """The samples' `op_index` arrays side by side (own node ids), each checked to lie in
    [0, n): a bad stored index must fail here, naming its sample, not crash a sparse kernel.
    (torch's own check_invariants initialises CUDA, which a forked DataLoader worker cannot.)"""
    lengths = [int(s[op + "_index"].shape[1]) for s in samples]
    index = cat([s[op + "_index"] for s in samples], 1)
    limit = torch.repeat_interleave(torch.as_tensor(counts), torch.as_tensor(lengths))
    bad = ((index < 0) | (index >= limit)).any(0)
    if bool(bad.any()):
        owner = torch.repeat_interleave(torch.arange(len(samples)), torch.as_tensor(lengths))
        i = int(owner[bad][0])
        raise ValueError(f"{sample_label(samples, i)}: '{op}_index' holds node ids outside "
                         f"[0, {counts[i]}); the stored operator does not fit the sample")
    return index, lengths
