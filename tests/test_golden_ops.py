"""An op whose numbers change must bump its `version` (else cached datasets keep stale results).

Compares each op's outputs on small fixed inputs (tests/golden_ops.py) with the hashes recorded
per (op, version) in tests/golden/op_outputs.json.
"""
import numpy as np

from golden_ops import GOLDEN, array_digest, compute, load

HOW = ("bump `version` in the op's register_op(...) (gdl_data/ops/), then record the new "
       "version: python tests/golden_ops.py --update")


def test_every_op_output_matches_its_recorded_version():
    golden, problems = load(), []
    for key, by_case in compute().items():
        for case, digests in by_case.items():
            recorded = golden.get(key, {}).get(case)
            if recorded is None:
                problems.append(f"{key} [{case}]: not recorded in {GOLDEN}; run python tests/golden_ops.py --update")
                continue
            changed = sorted(k for k in set(digests) | set(recorded) if digests.get(k) != recorded.get(k))
            if changed:
                problems.append(f"{key} [{case}]: output {', '.join(changed)} changed without a version bump; {HOW}")
    assert not problems, "\n".join(problems)


def test_the_digest_ignores_last_bit_noise_and_sees_real_changes():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8))
    noisy = a * (1 + 1e-13 * rng.standard_normal(a.shape))      # BLAS-level differences
    assert array_digest(noisy) == array_digest(a)
    changed = a.copy()
    changed[3, 2] += 1e-4 * np.abs(a).max()                        # a real change, 1e-4 of the scale
    assert array_digest(changed) != array_digest(a)
    assert array_digest(a.astype(np.float32)) == array_digest(a.astype(np.float32).astype(np.float64))
    inf = a.copy()
    inf[0, 0] = np.inf
    assert array_digest(inf) != array_digest(a)
