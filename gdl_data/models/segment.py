"""Segment operations on a concatenated batch (PyG layout), shared by the reference models.

A batch of B samples concatenates their node arrays into N rows; `batch` (N,) names each row's
sample and `ptr` (B+1,) the first row of each sample. Everything below works on the whole
batch at once (index_add / gather / one padded bmm), never with a Python loop over samples.
"""
from __future__ import annotations

import torch


def segment_sum(src: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """out[s] = sum of src[i] over the rows i with index[i] == s; shape (num_segments, *src.shape[1:])."""
    out = src.new_zeros((num_segments, *src.shape[1:]))
    return out.index_add_(0, index, src)


def segment_mean(src: torch.Tensor, index: torch.Tensor, num_segments: int,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """(Weighted) mean of the rows of each segment; `weight` (N,) e.g. the vertex areas."""
    if weight is None:
        weight = src.new_ones(src.shape[0])
    weight = weight.to(src.dtype)
    total = segment_sum(weight, index, num_segments).clamp_min(torch.finfo(src.dtype).tiny)
    shape = (-1,) + (1,) * (src.dim() - 1)
    return segment_sum(src * weight.view(shape), index, num_segments) / total.view(shape)


def readout(x: torch.Tensor, batch: dict, how: str | None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Node rows -> one row per sample ('mean' or 'sum'); `None` keeps the node rows."""
    if how is None:
        return x
    num = batch["ptr"].numel() - 1
    if how == "sum":
        return segment_sum(x, batch["batch"], num)
    if how == "mean":
        return segment_mean(x, batch["batch"], num, weight)
    raise ValueError(f"readout must be 'mean', 'sum' or None (node-level), got {how!r}")


def position_in_sample(batch: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Each row's index inside its own sample: arange(N) - ptr[batch]."""
    return torch.arange(batch.numel(), device=batch.device) - ptr[batch]


def to_padded(x: torch.Tensor, batch: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """(N, *f) concatenated rows -> (B, n_max, *f), zero-padded after each sample's rows."""
    sizes = ptr[1:] - ptr[:-1]
    n_max = int(sizes.max()) if sizes.numel() else 0
    out = x.new_zeros((sizes.numel(), n_max, *x.shape[1:]))
    out[batch, position_in_sample(batch, ptr)] = x
    return out


def from_padded(padded: torch.Tensor, batch: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_padded`: (B, n_max, *f) -> (N, *f)."""
    return padded[batch, position_in_sample(batch, ptr)]


def propagate(x: torch.Tensor, edge_index: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """out[t] = sum over edges (s -> t) of weight_e * x[s]  (a sparse matrix product A x)."""
    src, dst = edge_index
    messages = x[src] if weight is None else x[src] * weight.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return segment_sum(messages, dst, x.shape[0])


def symmetric_norm(edge_index: torch.Tensor, num_nodes: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Edge weights of D^-1/2 A D^-1/2 (D the weighted in-degree); zero-degree nodes get 0."""
    if weight is None:
        weight = torch.ones(edge_index.shape[1], device=edge_index.device)
    degree = segment_sum(weight.float(), edge_index[1], num_nodes)
    inv_sqrt = degree.clamp_min(1e-12).rsqrt() * (degree > 0)
    return inv_sqrt[edge_index[0]] * weight * inv_sqrt[edge_index[1]]
