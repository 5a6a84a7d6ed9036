"""SchNet for molecules (Schütt, Kindermans, Sauceda, Chmiela, Tkatchenko, Müller, *SchNet: A
continuous-filter convolutional neural network for modeling quantum interactions*, NeurIPS 2017).

Atoms start from an embedding of their atomic number `z`. Each interaction block passes
messages along the precomputed radius graph (`edge_index`, `edge_dist`): the filter for an
edge is an MLP of the distance expanded in Gaussian radial basis functions, multiplied by a
cosine cutoff that takes it smoothly to 0 at the cutoff radius (as in SchNetPack), so the
output is invariant to rotations, translations and permutations. Atom-wise outputs are summed
per molecule (extensive properties such as logP or energies).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gdl_data.models.registry import register_model
from gdl_data.models.segment import readout, segment_sum

MAX_ATOMIC_NUMBER = 100


class ShiftedSoftplus(nn.Module):
    """softplus(x) - log 2: smooth like softplus, and 0 at 0 (the paper's activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(x) - math.log(2.0)


def gaussian_rbf(dist: torch.Tensor, cutoff: float, count: int, width: float | None = None) -> torch.Tensor:
    """exp(-(d - μ_i)² / (2 w²)) for `count` centres μ_i evenly spaced on [0, cutoff]; (E, count)."""
    centres = torch.linspace(0.0, cutoff, count, device=dist.device)
    width = width or (cutoff / (count - 1))
    return torch.exp(-((dist.float().unsqueeze(-1) - centres) ** 2) / (2 * width ** 2))


def cosine_cutoff(dist: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5 (cos(π d / r_c) + 1) inside the cutoff, 0 beyond it."""
    dist = dist.float()
    return 0.5 * (torch.cos(math.pi * dist / cutoff) + 1.0) * (dist < cutoff)


class Interaction(nn.Module):
    """cfconv: x_i += Dense(Σ_j Dense(x_j) ⊙ W(d_ij)), W = filter MLP of the RBF expansion × cutoff."""

    def __init__(self, hidden: int, filters: int, num_rbf: int):
        super().__init__()
        self.filter = nn.Sequential(nn.Linear(num_rbf, filters), ShiftedSoftplus(), nn.Linear(filters, filters))
        self.into_filters = nn.Linear(hidden, filters, bias=False)
        self.out = nn.Sequential(nn.Linear(filters, hidden), ShiftedSoftplus(), nn.Linear(hidden, hidden))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, rbf: torch.Tensor,
                envelope: torch.Tensor) -> torch.Tensor:
        w = self.filter(rbf) * envelope.unsqueeze(-1)                  # (E, filters)
        h = self.into_filters(x)
        src, dst = edge_index
        return x + self.out(segment_sum(h[src] * w.to(h.dtype), dst, x.shape[0]))


@register_model("schnet", domain="molecule", requires=("z", "edge_index", "edge_dist"), default_readout="sum",
                node_level=True, paper="Schütt et al., NeurIPS 2017")
class SchNet(nn.Module):
    """in_channels: extra per-atom input features (0 for none; z is always used); out_channels:
    outputs; readout: None (per atom), 'sum' (default, extensive) or 'mean'; hidden=64 atom
    features; filters=64; interactions=3; num_rbf=50 Gaussians on [0, cutoff]; cutoff=5.0 (Å,
    the radius of the stored graph or smaller)."""

    def __init__(self, in_channels: int, out_channels: int, readout: str | None = "sum", *,
                 hidden: int = 64, filters: int = 64, interactions: int = 3, num_rbf: int = 50,
                 cutoff: float = 5.0):
        super().__init__()
        self.readout, self.cutoff, self.num_rbf = readout, cutoff, num_rbf
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden)
        self.features = nn.Linear(in_channels, hidden, bias=False) if in_channels else None
        self.interactions = nn.ModuleList(Interaction(hidden, filters, num_rbf) for _ in range(interactions))
        self.head = nn.Sequential(nn.Linear(hidden, hidden // 2), ShiftedSoftplus(),
                                  nn.Linear(hidden // 2, out_channels))

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        z = batch["z"].long()
        if int(z.max()) > MAX_ATOMIC_NUMBER:
            raise ValueError(f"schnet embeds atomic numbers up to {MAX_ATOMIC_NUMBER}, got {int(z.max())}")
        h = self.embedding(z)
        if self.features is not None:
            h = h + self.features(x)
        dist = batch["edge_dist"]
        rbf = gaussian_rbf(dist, self.cutoff, self.num_rbf)
        envelope = cosine_cutoff(dist, self.cutoff)
        for interaction in self.interactions:
            h = interaction(h, batch["edge_index"], rbf, envelope)
        return readout(self.head(h), batch, self.readout)
