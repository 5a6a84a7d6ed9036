"""Ops computed for many samples at once (Op.run_batch) give what they give one at a time.

Batching exists for speed only (gdl_data/ops/registry.py): a shard of small molecules goes
through each op together. These tests hold it to the same bytes as per-sample runs, on RDKit
molecules of mixed sizes (fewer atoms than k included), and to the same error for a bad sample.
"""
import numpy as np
import pytest

from gdl_data.ops import get_op
from gdl_data.readers import iter_samples
from pipelines.demo_data import write_conformer_sdf


def _molecules(tmp_path, count=40):
    path = tmp_path / "mols.sdf"
    write_conformer_sdf(str(path), count, seed=5)
    return [s.record() for s in iter_samples(str(path), "molecule", source=str(path))]


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), key


@pytest.mark.parametrize("normalization", ["combinatorial", "sym"])
def test_batched_eigenbasis_equals_one_at_a_time_byte_for_byte(tmp_path, normalization):
    op = get_op("eigenbasis")
    samples = _molecules(tmp_path)
    sizes = {len(s["pos"]) for s in samples}
    params = op.parse_params({"k": 8, "normalization": normalization}, "molecule")
    assert min(sizes) < 8 < max(sizes) and len(sizes) > 3      # k ≥ n and k < n, several sizes
    batched = op.run_batch(samples, params)
    for sample, out in zip(samples, batched):
        _same(out, op.run(sample, params))


def test_a_bad_sample_fails_alone_with_the_error_it_has_alone(tmp_path):
    op = get_op("eigenbasis")
    samples = _molecules(tmp_path, 12)
    params = op.parse_params({"k": 4}, "molecule")
    bad = dict(samples[5], bond_index=np.array([[0, 999], [999, 0]]))    # a bond to no atom
    samples[5] = bad
    batched = op.run_batch(samples, params)
    assert isinstance(batched[5], Exception)
    try:
        op.run(bad, params)
    except Exception as exc:  # noqa: BLE001 - the error it raises alone
        alone = exc
    assert type(batched[5]) is type(alone) and str(batched[5]) == str(alone)
    for i, (sample, out) in enumerate(zip(samples, batched)):
        if i != 5:
            _same(out, op.run(sample, params))


def test_ops_without_a_batch_implementation_run_one_at_a_time(tmp_path):
    op = get_op("geodesics")
    samples = _molecules(tmp_path, 6)
    params = op.parse_params({}, "molecule")
    assert "molecule" not in op.batch_impls
    for sample, out in zip(samples, op.run_batch(samples, params)):
        _same(out, op.run(sample, params))


def test_batched_radius_neighbourhoods_equal_one_at_a_time_byte_for_byte(tmp_path):
    """Molecules of several sizes, one above SMALL_POINT_SET (a k-d tree alone), one with a pair
    exactly at the radius (kept: distance <= radius), a single atom and two coincident atoms."""
    from gdl_data.ops.neighbor_graphs import SMALL_POINT_SET
    op = get_op("neighborhoods")
    samples = _molecules(tmp_path)
    rng = np.random.default_rng(2)
    no_bonds = np.zeros((2, 0), dtype=np.int64)
    big = dict(samples[0], pos=rng.uniform(0, 6, (SMALL_POINT_SET + 9, 3)), bond_index=no_bonds)
    edge = dict(samples[1], pos=np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 2.0, 0.0]]), bond_index=no_bonds)
    lone = dict(samples[2], pos=np.array([[1.0, 2.0, 3.0]]), bond_index=no_bonds)
    twins = dict(samples[3], pos=np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]), bond_index=no_bonds)
    samples += [big, edge, lone, twins]
    for params in ({"radius": 1.5}, {"radius": 5.0}, {}):
        parsed = op.parse_params(params, "molecule")
        batched = op.run_batch(samples, parsed)
        for sample, out in zip(samples, batched):
            _same(out, op.run(sample, parsed))
    at_radius = op.run_batch(samples, op.parse_params({"radius": 1.5}, "molecule"))[-3]
    assert at_radius["edge_index"].tolist() == [[0, 1], [1, 0]]


def test_a_batched_op_checks_every_sample_as_one_at_a_time(tmp_path):
    """Batched outputs are checked in one pass when all are finite; a NaN in one sample is that
    sample's error (and +inf stays allowed), as when the op runs one sample at a time."""
    from crash_ops import NAN
    samples = _molecules(tmp_path, 30)
    sizes = [len(s["pos"]) for s in samples]
    params = NAN.parse_params({"nan_at": sizes[7]}, "molecule")
    batched = NAN.run_batch(samples, params)
    for size, out in zip(sizes, batched):
        if size == sizes[7]:
            assert isinstance(out, Exception) and "NaN" in str(out)
        else:
            assert out["score"].tolist() == [float(size)] and out["reach"][0] == np.inf
    clean = NAN.run_batch(samples, NAN.parse_params({"nan_at": 10_000}, "molecule"))
    assert not any(isinstance(out, Exception) for out in clean)
