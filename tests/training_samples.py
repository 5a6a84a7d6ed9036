"""Small generated datasets and settings for the training tests."""
import numpy as np
import pytest
import torch

from storage import commit_version, write_shard


def toy_molecules(uri, count=24, seed=0):
    """Random 'molecules' in two shards; the target counts their oxygens, which a sum over atoms
    can learn."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        n = int(rng.integers(4, 9))
        z = rng.choice([1, 6, 8], size=n)
        pos = rng.normal(scale=1.2, size=(n, 3))
        dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        src, dst = np.nonzero((dist < 3.0) & ~np.eye(n, dtype=bool))
        rows.append({"sample_id": f"s{seed}-m{i}", "source": f"toy.sdf#{i}", "domain": "molecule",
                     "pos": pos.astype(np.float32), "z": z.astype(np.int64),
                     "edge_index": np.stack([src, dst]).astype(np.int64),
                     "edge_dist": dist[src, dst].astype(np.float32),
                     "prop_oxygens": np.float64((z == 8).sum())})
    commit_version(uri, [write_shard(uri, rows[:count // 2]), write_shard(uri, rows[count // 2:])], [])


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster, and on a shared 2-core machine far steadier.
    (Autouse in every test module that imports it.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
