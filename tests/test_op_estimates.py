"""Memory estimates of the ops (issue 10, item 3) against peak RSS measured in a fresh process.

The measurement is bench/op_estimates.py's: the op's peak RSS above the RSS it started from,
C allocations (CHOLMOD, robust-laplacian, potpourri3d) included; sizes are chosen so that the
op's own arrays, not the fixed BASE_BYTES, make up most of the estimate.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gdl_data.errors import OverBudget
from gdl_data.ops import get_op
from gdl_data.ops.registry import BASE_BYTES, DEFAULT_FACTOR

ROOT = Path(__file__).resolve().parents[1]


def measured(op, domain, params, size):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench.op_estimates", "--measure",
                           json.dumps([op, domain, params, size])],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("op, domain, params, size", [
    ("eigenbasis", "sphere", {"k": 16}, 32),                         # block Lanczos, 12k pixels
    ("eigenbasis", "sphere", {"k": 16, "solver": "lobpcg"}, 64),      # LOBPCG + AMG, 49k pixels
    ("eigenbasis", "mesh", {"k": 32}, 5),                            # robust Laplacian, 10k
    ("eigenbasis", "graph", {"k": 8}, 20_000),                       # kNN graph, LOBPCG
    ("neighborhoods", "sphere", {}, 64),
    ("geodesics", "mesh", {"sources": 4}, 5),
])
def test_estimate_bounds_the_measured_peak_within_3x(op, domain, params, size):
    row = measured(op, domain, params, size)
    assert row["estimate"] >= row["measured"], row
    assert row["estimate"] <= 3 * row["measured"] + BASE_BYTES, row


def sphere_of(nside):
    """A sphere sample's shape without its memory: estimates read sizes only."""
    n = 12 * nside * nside
    return {"domain": "sphere", "source": f"map-{nside}.fits", "nside": nside,
            "pos": np.broadcast_to(np.zeros(3), (n, 3)), "values": np.broadcast_to(0.0, (n, 1))}


def test_nside_1024_estimate_and_the_over_budget_message_name_what_to_change():
    sample = sphere_of(1024)
    eigenbasis = get_op("eigenbasis")
    params = eigenbasis.parse_params({"k": 16}, "sphere")
    estimate = eigenbasis.estimate_bytes(sample, params)
    # LOBPCG keeps X and P (n × 16 doubles each) and the V-cycle's float32 blocks (≥ 448 B a
    # pixel) besides the Laplacian (108 B); with the multigrid hierarchy and the allocator's
    # share, measured ≈ 950 B a pixel at nside 256.
    n = 12 * 1024 ** 2
    assert 600 * n < estimate < 2000 * n
    error = eigenbasis.over_budget(sample, params, budget=4_000_000_000)
    assert isinstance(error, OverBudget) and error.kind == "over-budget"
    message = str(error)
    assert message.startswith("map-1024.fits: op 'eigenbasis' needs an estimated ")
    assert "budget of 4.0 GB" in message and "basis: spherical_harmonics" in message
    assert "smaller k (now 16)" in message
    # The spherical-harmonics basis needs no graph and no solver: far less.
    harmonics = eigenbasis.parse_params({"k": 16, "basis": "spherical_harmonics"}, "sphere")
    assert eigenbasis.estimate_bytes(sample, harmonics) < estimate / 2


def test_block_lanczos_forced_on_a_large_graph_is_estimated_as_its_fill_in():
    n = 200_000
    sample = {"domain": "graph", "source": "big.edgelist", "num_nodes": n,
              "edge_index": np.broadcast_to(np.zeros((2, 1), np.int64), (2, 10 * n))}
    eigenbasis = get_op("eigenbasis")
    auto = eigenbasis.estimate_bytes(sample, eigenbasis.parse_params({"k": 16}, "graph"))
    forced = eigenbasis.estimate_bytes(
        sample, eigenbasis.parse_params({"k": 16, "solver": "block_lanczos"}, "graph"))
    assert auto < 2e9 < 100e9 < forced          # a dense factor of 2·10¹⁰ entries
    assert "solver: auto" in str(eigenbasis.over_budget(
        sample, eigenbasis.parse_params({"k": 16, "solver": "block_lanczos"}, "graph"), int(8e9)))


def test_an_op_without_a_formula_gets_the_documented_default():
    gradients = get_op("gradients")
    record = sphere_of(8) | {"domain": "mesh", "faces": np.zeros((100, 3), np.int64)}
    record["pos"] = np.zeros((768, 3))
    record["values"] = np.zeros((768, 1))
    expected = DEFAULT_FACTOR * (768 * 3 * 8 + 768 * 8 + 100 * 3 * 8) + BASE_BYTES
    assert gradients.estimate_bytes(record, gradients.parse_params({}, "mesh")) == expected
