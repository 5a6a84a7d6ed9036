"""The `hks` op: the heat kernel signature of every point, from the stored eigenbasis.

Sun, Ovsjanikov, Guibas, *A Concise and Provably Informative Multi-Scale Signature Based on
Heat Diffusion* (SGP 2009): HKS(x, t) = k_t(x, x) = Σ_i exp(−λ_i t) φ_i(x)², the heat left at x
at time t after a unit of heat was placed at x; here truncated to the k stored eigenpairs
(`evals`, `evecs` orthonormal w.r.t. `mass`, so φ_i(x)² and the HKS are in 1/area). It is
DiffusionNet's standard input feature (`compute_hks`, Sharp et al. 2022).

Times (`times`, `scale`):
  scale "spectrum" (default): `times` = n log-spaced times from 4 ln 10 / λ_max to
      4 ln 10 / λ_min, λ_max the largest stored eigenvalue and λ_min the smallest nonzero one
      (Sun et al.'s choice, with λ_max their λ_300), per sample: the same times relative to the
      shape's own spectrum, whatever its unit.
  scale "diffusionnet": n times log-spaced from 0.01 to 1, whatever the shape's size, as
      DiffusionNet's `compute_hks_autoscale` (its geometry.py); meant for shapes scaled to
      unit size, as DiffusionNet's loaders do.
  scale "absolute": `times` is a list of times, in length² (the units of 1/evals).
Outputs: `hks` (n, s) and `hks_times` (s,) the times used, ascending as given.
The eigenbasis is that of an earlier `eigenbasis` op in the spec, else one with its defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdl_data.errors import OpError
from gdl_data.ops.eigenbasis import EIGENBASIS, EigenbasisParams
from gdl_data.ops.registry import register_op
from gdl_data.params import Choice, Integer, NumberList, check_params, param

SCALES = ("spectrum", "diffusionnet", "absolute")
# An eigenvalue counts as zero (one per connected component) below 1e-6 of the largest stored
# one or below 1e-7·n/area: rounding leaves ≈ 1e-15·n/area, eigenbasis shift 1e-8 ≈ 1e-8·n/area
# on a component as dense as the whole, while the first nonzero one is ≈ 25/area on a round
# shape (the unit sphere: 2), so only shapes thinner than ≈ 1e-4 of their length come near it.
_ZERO_RELATIVE, _ZERO_DENSITY = 1e-6, 1e-7


def heat_kernel_signature(evals: np.ndarray, evecs: np.ndarray, times: np.ndarray) -> np.ndarray:
    """HKS(x, t) = Σ_i exp(−λ_i t) φ_i(x)² (Sun, Ovsjanikov, Guibas 2009).

    evals: (k,) ≥ 0 in 1/length²; evecs: (n, k), orthonormal w.r.t. the mass matrix;
    times: (s,) > 0 in length². Returns (n, s) float64, in 1/area.
    """
    evals = np.asarray(evals, dtype=np.float64)
    decay = np.exp(-np.outer(evals, np.asarray(times, dtype=np.float64)))     # (k, s)
    return np.square(np.asarray(evecs, dtype=np.float64)) @ decay


def hks_times(evals: np.ndarray, mass: np.ndarray, count: int,
              scale: str = "spectrum") -> np.ndarray:
    """`count` log-spaced times: per the spectrum (Sun et al.) or DiffusionNet's 0.01 … 1.

    evals: (k,) the sample's eigenvalues; mass: (n,) its vertex areas (they say which
    eigenvalues are zero: see _ZERO_DENSITY); count ≥ 1; scale: "spectrum" or "diffusionnet".
    Returns (count,) float64, ascending. Raises ValueError when "spectrum" finds no nonzero
    eigenvalue (k too small for the number of connected components).
    """
    if scale == "diffusionnet":
        return np.logspace(-2.0, 0.0, count)
    evals = np.asarray(evals, dtype=np.float64)
    mass = np.asarray(mass, dtype=np.float64)
    zero = max(_ZERO_RELATIVE * evals.max(initial=0.0), _ZERO_DENSITY * len(mass) / mass.sum())
    nonzero = evals[evals > zero]
    if len(nonzero) == 0:
        raise ValueError(f"all {len(evals)} stored eigenvalues are zero (one per connected "
                         f"component), so the spectrum sets no time scale; raise eigenbasis k "
                         f"or write hks: {{scale: absolute, times: [0.01, 0.1, 1.0]}}")
    ln = 4.0 * np.log(10.0)
    return np.geomspace(ln / nonzero.max(), ln / nonzero.min(), count)


@dataclass(frozen=True)
class HksParams:
    """`hks` parameters: `times` (an int: that many log-spaced times, default 16; with scale
    "absolute", a list of times in length²), `scale` ("spectrum" default, "diffusionnet",
    "absolute"); see the module docstring."""

    times: int | list = param(16, Integer(1), NumberList(example=(0.01, 0.1)),
                              doc="how many log-spaced times, or (scale absolute) the times in length²")
    scale: str = param("spectrum", Choice(SCALES),
                       doc="times from the spectrum (Sun et al.), DiffusionNet's 0.01-1, or absolute")

    def __post_init__(self):
        check_params(self)
        if (self.scale == "absolute") != isinstance(self.times, (list, tuple)):
            raise ValueError(f"times must be a list of times with scale absolute, and a count of "
                             f"log-spaced times otherwise; got scale {self.scale} and times "
                             f"{self.times!r}; write e.g. hks: {{scale: absolute, times: [0.01, 0.1]}}")
        if isinstance(self.times, (list, tuple)):
            object.__setattr__(self, "times", [float(x) for x in self.times])


HKS = register_op("hks", HksParams, version="1", outputs=("hks", "hks_times"),
                  depends_on=("eigenbasis",),
                  doc="heat kernel signature (Sun et al. 2009) at log-spaced or given times")


def _hks(sample, p: HksParams) -> dict[str, np.ndarray]:
    basis = sample if "evals" in sample else \
        EIGENBASIS.impls[sample["domain"]](sample, EigenbasisParams())
    try:
        times = np.asarray(p.times, dtype=np.float64) if p.scale == "absolute" else \
            hks_times(basis["evals"], basis["mass"], p.times, p.scale)
    except ValueError as exc:
        raise OpError(sample.get("source", "?"), f"hks: {exc}", kind="hks-failed") from None
    return {"hks": heat_kernel_signature(basis["evals"], basis["evecs"], times),
            "hks_times": times}


for _domain in EIGENBASIS.impls:
    HKS.implement(_domain)(_hks)
