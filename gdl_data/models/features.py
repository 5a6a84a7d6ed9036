"""Input features of a batch: stored node columns, or descriptors derived from stored geometry.

A training spec lists `features` by name. A stored node-level column (`x`, `values`, `pos`,
`normals`, `mass`, ...) is used as it is ((n,) becomes one channel). Derived names:

* `hks`: the heat kernel signature (Sun, Ovsjanikov, Guibas, SGP 2009) at 16 times, from the
  stored `evals`/`evecs`: hks(v, t) = Σ_i exp(-λ_i t) φ_i(v)², made invariant to the mesh's
  scale by measuring time in units of its total area A (λ -> λA, φ² -> φ²A), at times
  log-spaced in [1e-3, 1] and log-transformed. Invariant to rotations and to the sign of
  every eigenvector, as DiffusionNet uses it for rotated shapes (Sharp et al. 2022).
"""
from __future__ import annotations

from typing import Sequence

import torch

from gdl_data.errors import SpecError
from gdl_data.models.segment import segment_sum

HKS_TIMES = torch.logspace(-3, 0, 16)
DERIVED_FEATURES = {"hks": ("evals", "evecs", "mass")}


def heat_kernel_signature(evals: torch.Tensor, evecs: torch.Tensor, mass: torch.Tensor,
                          batch: torch.Tensor, times: torch.Tensor = HKS_TIMES) -> torch.Tensor:
    """log of the scale-normalised HKS; evals (B, k), evecs (N, k), mass (N,), batch (N,) -> (N, len(times))."""
    dtype = torch.promote_types(evecs.dtype, torch.float32)
    area = segment_sum(mass.to(dtype), batch, evals.shape[0])             # (B,)
    scaled = (evals.to(dtype) * area.unsqueeze(-1))[batch]                # (N, k): λ A per row
    decay = torch.exp(-scaled.unsqueeze(-1) * times.to(evals.device, dtype))  # (N, k, T)
    squared = evecs.to(dtype).square() * area[batch].unsqueeze(-1)        # (N, k): φ² A
    return torch.log(torch.einsum("nk,nkt->nt", squared, decay).clamp_min(1e-12))


def columns_for(features: Sequence[str]) -> set[str]:
    """The stored columns that computing `features` reads."""
    out: set[str] = set()
    for name in features:
        out.update(DERIVED_FEATURES.get(name, (name,)))
    return out


def assemble_features(batch: dict, features: Sequence[str]) -> torch.Tensor:
    """(N, c) float input of a collated batch: the named features side by side ((N, 0) if none)."""
    num_nodes = batch["batch"].numel()
    parts = []
    for name in features:
        if name == "hks":
            parts.append(heat_kernel_signature(batch["evals"], batch["evecs"], batch["mass"], batch["batch"]))
            continue
        value = batch[name]
        if value.shape[0] != num_nodes:
            raise SpecError(f"feature '{name}' is not a per-node column (it has {value.shape[0]} rows "
                            f"for {num_nodes} nodes); features must be node columns such as x, values, pos, or hks")
        parts.append(value.float().reshape(num_nodes, -1))
    if not parts:
        return torch.zeros(num_nodes, 0, device=batch["batch"].device)
    return torch.cat(parts, dim=1)
