"""Ops computed for many samples at once (Op.run_batch) give what they give one at a time.

Batching exists for speed only (gdl_data/ops/registry.py): a shard of small molecules goes
through each op together. These tests hold it to the same bytes as per-sample runs, on RDKit
molecules of mixed sizes (fewer atoms than k included), and to the same error for a bad sample.
"""
import numpy as np

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


def test_batched_eigenbasis_equals_one_at_a_time_byte_for_byte(tmp_path):
    op = get_op("eigenbasis")
    samples = _molecules(tmp_path)
    sizes = {len(s["pos"]) for s in samples}
    params = op.parse_params({"k": 8}, "molecule")
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
    op = get_op("neighborhoods")
    samples = _molecules(tmp_path, 6)
    params = op.parse_params({"radius": 3.0}, "molecule")
    for sample, out in zip(samples, op.run_batch(samples, params)):
        _same(out, op.run(sample, params))
