"""DeepSphere for HEALPix maps (Perraudin, Defferrard, Kacprzak, Sgier, *DeepSphere: Efficient
spherical convolutional neural network with HEALPix sampling for cosmological applications*,
Astronomy and Computing 2019).

Chebyshev graph filters (Defferrard et al., NeurIPS 2016) on the HEALPix pixel graph,
y = Σ_k θ_k T_k(L̃) x with L̃ = 2L/λ_max − I and L the normalised Laplacian (λ_max ≤ 2 taken as
2, so L̃ = −D^-1/2 A D^-1/2), alternating with pooling. In NESTED order the 4 children of a
pixel at nside/2 are the consecutive pixels 4p..4p+3, so pooling is a reshape and a mean, and
the coarse pixel graph is the fine one with its endpoints divided by 4 (two pixels touch iff
some of their children touch). The maps are stored in RING order (shared/DESIGN.md); they
are permuted to NESTED once per forward with healpy's ring2nest table, computed once per nside.
Reads `values` or other input features (N, c), `edge_index` (the HEALPix 8-neighbour graph,
RING) and `nside` (B,) from the batch; every map of a batch must have the same nside.
"""
from __future__ import annotations

import healpy
import numpy as np
import torch
from torch import nn

from gdl_data.models.registry import register_model
from gdl_data.models.segment import position_in_sample, propagate, readout, symmetric_norm

_RING_TO_NEST: dict[int, np.ndarray] = {}


def ring_to_nest(nside: int) -> np.ndarray:
    """NESTED index of every RING pixel at this nside (cached: one table per nside)."""
    if nside not in _RING_TO_NEST:
        _RING_TO_NEST[nside] = healpy.ring2nest(nside, np.arange(12 * nside * nside)).astype(np.int64)
    return _RING_TO_NEST[nside]


def coarsen_edges(edge_index: torch.Tensor) -> torch.Tensor:
    """The pixel graph one level up in NESTED order: endpoints // 4, self loops and repeats dropped."""
    coarse = torch.div(edge_index, 4, rounding_mode="floor")
    coarse = coarse[:, coarse[0] != coarse[1]]
    if coarse.shape[1] == 0:
        return coarse
    n = int(coarse.max()) + 1
    pairs = torch.unique(coarse[0] * n + coarse[1])    # one sort of int64 keys: 5x faster than dim=1
    return torch.stack([pairs // n, pairs % n])


class ChebConv(nn.Module):
    """Chebyshev filter of order K on the graph given by its scaled-Laplacian edge weights."""

    def __init__(self, in_channels: int, out_channels: int, K: int):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(in_channels, out_channels, bias=(k == 0)) for k in range(K))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        t_prev, t_cur = x, propagate(x, edge_index, weight)    # T_0 x = x, T_1 x = L̃ x
        out = self.linears[0](t_prev)
        for k, linear in enumerate(self.linears[1:], start=1):
            if k > 1:
                t_prev, t_cur = t_cur, 2 * propagate(t_cur, edge_index, weight) - t_prev
            out = out + linear(t_cur)
        return out


@register_model("deepsphere", domain="sphere", requires=("edge_index", "nside"), default_readout="mean",
                node_level=False, paper="Perraudin et al., Astronomy and Computing 2019")
class DeepSphere(nn.Module):
    """in_channels, out_channels: values per pixel and outputs (one row per map); readout:
    'mean' over the pixels of the coarsest level; channels=(16, 32, 64): one Chebyshev layer per
    level, each followed by a pooling (so nside must be divisible by 2**len(channels)); K=5
    Chebyshev order; dropout=0.0 before the final linear layer."""

    def __init__(self, in_channels: int, out_channels: int, readout: str | None = "mean", *,
                 channels: tuple[int, ...] = (16, 32, 64), K: int = 5, dropout: float = 0.0):
        super().__init__()
        if readout is None:
            raise ValueError("deepsphere pools to one prediction per map; it has no per-pixel output")
        self.readout, self.levels = readout, len(channels)
        sizes = [in_channels, *channels]
        self.convs = nn.ModuleList(ChebConv(a, b, K) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(sizes[-1], out_channels))

    def to_nested(self, x: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        nsides = batch["nside"]
        nside = int(nsides[0])
        if bool((nsides != nside).any()) or nside % (2 ** self.levels):
            raise ValueError(f"deepsphere needs one nside per batch divisible by {2 ** self.levels}, "
                             f"got nsides {sorted(set(nsides.tolist()))}")
        table = torch.as_tensor(ring_to_nest(nside), device=x.device)
        position = position_in_sample(batch["batch"], batch["ptr"])
        new_row = batch["ptr"][batch["batch"]] + table[position]   # each RING row's NESTED row
        nested = torch.empty_like(x)
        nested[new_row] = x
        return nested, new_row[batch["edge_index"]]

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        x, edge_index = self.to_nested(x, batch)
        for conv in self.convs:
            weight = -symmetric_norm(edge_index, x.shape[0])        # L̃ = −D^-1/2 A D^-1/2
            x = torch.relu(conv(x, edge_index, weight))
            x = x.view(-1, 4, x.shape[-1]).mean(dim=1)              # NESTED: 4 children -> parent
            edge_index = coarsen_edges(edge_index)
        factor = 4 ** self.levels                                   # pixels of a map per coarse pixel
        pooled_batch = {"batch": batch["batch"][::factor], "ptr": batch["ptr"] // factor}
        return self.head(readout(x, pooled_batch, self.readout))
