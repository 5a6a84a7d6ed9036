"""DiffusionNet for meshes (Sharp, Attaiki, Crane, Ovsjanikov, *DiffusionNet: Discretization
Agnostic Learning on Surfaces*, ACM TOG 2022).

Each block (i) diffuses every channel by heat flow for a learned time t_c, computed in the
precomputed Laplace–Beltrami eigenbasis, x_t = Φ exp(-Λ t) Φᵀ M x; (ii) takes the surface
gradient of the diffused channels in each vertex's tangent frame (the sparse `grad_x`,
`grad_y`) and forms rotation-invariant features from the inner product of each gradient with a
learned rotation-and-scaling of all gradients; (iii) a per-vertex MLP on [x, x_t, gradient
features] adds a residual. Reads `mass` (N,), `evals` (B, k), `evecs` (N, k), `grad_x`,
`grad_y` (block-diagonal sparse (N, N)) from the batch.
"""
from __future__ import annotations

import torch
from torch import nn

from gdl_data.models.registry import register_model
from gdl_data.models.segment import from_padded, readout, segment_sum, to_padded


def spectral_diffusion(x: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor, mass: torch.Tensor,
                       time: torch.Tensor, batch: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Heat diffusion of each channel for its own time, per sample, on a concatenated batch.

    x (N, C) signals; evals (B, k) and evecs (N, k) each sample's eigenpairs (evecs orthonormal
    w.r.t. the mass); mass (N,) lumped vertex areas; time (C,) diffusion time per channel;
    batch (N,) sample of each row; ptr (B+1,) first row of each sample. Returns (N, C):
    Φ_b exp(-Λ_b t) Φ_bᵀ M_b x_b for every sample b, with one padded batched matmul each way.
    """
    phi = to_padded(evecs, batch, ptr)                               # (B, n_max, k)
    weighted = to_padded(x * mass.unsqueeze(-1).to(x.dtype), batch, ptr)  # (B, n_max, C)
    spectrum = phi.transpose(1, 2) @ weighted.to(phi.dtype)          # (B, k, C): Φᵀ M x
    decay = torch.exp(-evals.unsqueeze(-1) * time.view(1, 1, -1))    # (B, k, C)
    return from_padded(phi @ (spectrum * decay.to(spectrum.dtype)), batch, ptr).to(x.dtype)


def tangent_gradients(x: torch.Tensor, grad_x: torch.Tensor,
                      grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-vertex gradient of each channel in the vertex's tangent frame (sparse products in fp32)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x32 = x.float()
        return torch.sparse.mm(grad_x, x32), torch.sparse.mm(grad_y, x32)


class GradientFeatures(nn.Module):
    """tanh(<g, A g>) per channel, A a learned complex-linear map of the tangent vectors g = (gx, gy):
    invariant to the choice of tangent frame because A acts the same in every frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.real = nn.Linear(channels, channels, bias=False)
        self.imag = nn.Linear(channels, channels, bias=False)

    def forward(self, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        bx = self.real(gx) - self.imag(gy)
        by = self.real(gy) + self.imag(gx)
        return torch.tanh(gx * bx + gy * by)


class DiffusionBlock(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.time = nn.Parameter(torch.zeros(width))   # the paper starts every time at 0
        self.gradient_features = GradientFeatures(width)
        self.mlp = nn.Sequential(nn.Linear(3 * width, width), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(width, width))

    def forward(self, x: torch.Tensor, geometry: dict) -> torch.Tensor:
        # As the paper's code: clamp the stored value, then use it, so the gradient still flows
        # (clamp_min's gradient is 0 below the bound, which would pin the times at their start, 0).
        with torch.no_grad():
            self.time.clamp_(min=1e-8)
        diffused = spectral_diffusion(x, geometry["evals"], geometry["evecs"], geometry["mass"], self.time,
                                      geometry["batch"], geometry["ptr"])
        gx, gy = tangent_gradients(diffused, geometry["grad_x"], geometry["grad_y"])
        features = self.gradient_features(gx.to(x.dtype), gy.to(x.dtype))
        return x + self.mlp(torch.cat([x, diffused, features], dim=-1))


@register_model("diffusion_net", domain="mesh", requires=("mass", "evals", "evecs", "grad_x", "grad_y"),
                default_readout="mean", node_level=True, paper="Sharp et al., ACM TOG 2022")
class DiffusionNet(nn.Module):
    """DiffusionNet: `blocks` diffusion blocks of `width` channels between two linear maps.

    in_channels, out_channels: input features per vertex (e.g. heat kernel signatures) and
    outputs; readout: None (per-vertex outputs) or 'mean' (area-weighted mean per mesh);
    width=64; blocks=4; dropout=0.0; scale_invariant=True multiplies each mesh's eigenvalues by
    its total area, so that learned times mean the same on meshes of any size (the paper
    normalises the meshes instead; we never rescale stored geometry).
    """

    def __init__(self, in_channels: int, out_channels: int, readout: str | None = "mean", *,
                 width: int = 64, blocks: int = 4, dropout: float = 0.0, scale_invariant: bool = True):
        super().__init__()
        self.readout, self.scale_invariant = readout, scale_invariant
        self.first = nn.Linear(in_channels, width)
        self.blocks = nn.ModuleList(DiffusionBlock(width, dropout) for _ in range(blocks))
        self.last = nn.Linear(width, out_channels)

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        geometry = dict(batch)
        for name in ("grad_x", "grad_y"):   # the collated COO is coalesced once, not in every block
            geometry[name] = batch[name].coalesce()
        if self.scale_invariant:
            area = segment_sum(batch["mass"].float(), batch["batch"], batch["ptr"].numel() - 1)
            geometry["evals"] = batch["evals"].float() * area.unsqueeze(-1)
        h = self.first(x)
        for block in self.blocks:
            h = block(h, geometry)
        return readout(self.last(h), batch, self.readout, weight=batch["mass"])
