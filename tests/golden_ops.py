"""Golden outputs per op: small fixed inputs, the hash of every output, per (op, version).

An op's `version` (gdl_data/ops/registry.py) is what tells the cache to recompute; a change of
numbers without a bump would leave stale results in every cached dataset. tests/test_golden_ops.py
recomputes these cases and compares with tests/golden/op_outputs.json:

    python tests/golden_ops.py --update    # record the hashes of op versions not yet recorded

`--update` never rewrites the hashes of a version already recorded: changing numbers means
bumping the op's `version`, which makes a new key. Keys name the versions of the ops read too
(`neighborhoods@1 frames@1`), since their numbers flow into the op's.

Hashing: floats are quantized to 6 significant digits of the array's largest finite magnitude
(1e-6 of the scale), so last-bit differences between BLAS builds (≈ 1e-15 relative) cannot
change a hash unless a value sits within that noise of a rounding boundary (odds ≈ 1e-9 per
value), while any real change above 1e-6 of the scale does. `inf` (unreachable) is kept as such.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden", "op_outputs.json")


def array_digest(value: Any) -> str:
    """SHA-256 (16 hex digits) of dtype kind, shape and values, floats quantized (module doc)."""
    a = np.asarray(value)
    if a.dtype.kind == "f":
        a = a.astype(np.float64)          # float32 and float64 of the same numbers hash alike
        finite = np.isfinite(a)
        scale = float(np.abs(a[finite]).max()) if finite.any() else 1.0
        scale = scale or 1.0
        q = np.where(finite, np.round(np.where(finite, a, 0.0) / scale * 1e6), 0).astype(np.int64)
        q[np.isposinf(a)] = np.iinfo(np.int64).max
        body = q.tobytes() + f"{scale:.5e}".encode()
    elif a.dtype.kind in "iub":
        body = a.astype(np.int64).tobytes()
    else:
        body = "\x00".join(map(str, a.ravel())).encode()
    head = f"{a.dtype.kind}{a.shape}".encode()
    return hashlib.sha256(head + body).hexdigest()[:16]


def _jittered_ball():
    import trimesh
    mesh = trimesh.creation.icosphere(subdivisions=1)
    pos = np.asarray(mesh.vertices, dtype=np.float64)
    # Irregular on purpose: a symmetric surface has degenerate eigenspaces (no unique basis).
    pos *= 1 + 0.15 * np.random.default_rng(7).random((len(pos), 1))
    return pos, np.asarray(mesh.faces, dtype=np.int64)


def _graph():
    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (2, 4), (4, 5), (5, 6), (6, 4), (6, 7), (7, 8), (8, 9),
             (9, 10), (10, 8), (1, 11), (3, 9)]
    both = np.array(edges + [(b, a) for a, b in edges], dtype=np.int64).T
    return {"domain": "graph", "source": "golden-graph", "num_nodes": np.int64(12), "edge_index": both}


def _molecule():
    rng = np.random.default_rng(3)
    pos = np.cumsum(rng.normal(size=(9, 3)), axis=0) * 1.2
    bonds = [(i, i + 1) for i in range(8)] + [(2, 6)]
    both = np.array(bonds + [(b, a) for a, b in bonds], dtype=np.int64).T
    return {"domain": "molecule", "source": "golden-molecule", "pos": pos,
            "z": np.array([6, 6, 8, 6, 7, 6, 6, 8, 1], dtype=np.int64), "bond_index": both}


def _sphere():
    import healpy
    nside = 2
    pos = np.stack(healpy.pix2vec(nside, np.arange(12 * nside * nside)), axis=1)
    return {"domain": "sphere", "source": "golden-sphere", "nside": np.int64(nside), "pos": pos,
            "values": np.linspace(0.0, 1.0, len(pos))[:, None]}


def cases() -> dict[str, tuple[dict, dict[str, dict]]]:
    """case name -> (input sample, {op: params}); ops run in dependency order."""
    pos, faces = _jittered_ball()
    mesh = {"domain": "mesh", "source": "golden-mesh", "pos": pos, "faces": faces}
    cloud = {**mesh, "source": "golden-cloud", "faces": np.zeros((0, 3), np.int64)}
    return {
        "mesh": (mesh, {"frames": {}, "eigenbasis": {"k": 6}, "geodesics": {"sources": 3},
                        "neighborhoods": {}, "gradients": {}, "hks": {}}),
        "point-cloud": (cloud, {"frames": {"knn": 8}, "eigenbasis": {"k": 6}, "geodesics": {"sources": 2},
                                "neighborhoods": {"knn": 6}, "gradients": {"knn": 8}}),
        "graph": (_graph(), {"eigenbasis": {"k": 5, "normalization": "sym"}, "geodesics": {"sources": 3},
                             "neighborhoods": {"hops": 2}, "hks": {}}),
        "molecule": (_molecule(), {"eigenbasis": {"k": 4}, "geodesics": {"sources": 2},
                                   "neighborhoods": {"radius": 2.5}}),
        "sphere": (_sphere(), {"frames": {}, "eigenbasis": {"k": 9, "basis": "spherical_harmonics"},
                               "geodesics": {"sources": 2}, "neighborhoods": {}, "gradients": {}}),
    }


def op_key(name: str, ran: list[str]) -> str:
    """`neighborhoods@1 frames@1`: the op's version and those of the ops it read."""
    from gdl_data.ops import get_op
    op = get_op(name)
    return " ".join([f"{name}@{op.version}"] + [f"{d}@{get_op(d).version}" for d in op.depends_on if d in ran])


def compute() -> dict[str, dict[str, dict[str, str]]]:
    """{op key: {case: {output: digest}}} for every case."""
    from pipelines.spec import OpStep, dependency_order
    from gdl_data.ops import get_op
    out: dict[str, dict[str, dict[str, str]]] = {}
    for case, (sample, ops) in cases().items():
        sample = dict(sample)
        steps = dependency_order([OpStep(n, get_op(n).parse_params(p, sample["domain"])) for n, p in ops.items()])
        for step in steps:
            result = get_op(step.name).run(sample, step.params)
            sample.update(result)
            key = op_key(step.name, list(ops))
            out.setdefault(key, {})[case] = {k: array_digest(v) for k, v in sorted(result.items())}
    return out


def load() -> dict:
    if not os.path.exists(GOLDEN):
        return {}
    with open(GOLDEN) as fh:
        return json.load(fh)


def update() -> list[str]:
    """Record cases not yet recorded; never overwrite a recorded (op key, case)."""
    golden, added = load(), []
    for key, by_case in compute().items():
        for case, digests in by_case.items():
            if case not in golden.get(key, {}):
                golden.setdefault(key, {})[case] = digests
                added.append(f"{key} [{case}]")
    os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
    with open(GOLDEN, "w") as fh:
        json.dump(golden, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return added


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    if "--update" not in sys.argv:
        print(__doc__)
        sys.exit(2)
    for line in update() or ["nothing new: every op version is recorded"]:
        print("recorded", line)
