"""Synthetic geometry rows for the loader tests, written with storage directly (no pipeline)."""
import numpy as np
import torch

from storage import commit_version, write_shard


def mesh_row(i: int, rng: np.random.Generator, k: int = 4, sources: int = 2) -> dict:
    """A random 'mesh' with every kind of column the loader batches: node, index, edge, sparse,
    per-sample, text. Sizes vary per sample so that offsets and padding matter."""
    n = int(rng.integers(5, 30))
    faces = rng.integers(0, n, size=(int(rng.integers(3, 2 * n)), 3))
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    pairs = np.unique(np.concatenate([pairs, pairs[:, ::-1]]), axis=0)
    edge_index = pairs[pairs[:, 0] != pairs[:, 1]].T
    pos = rng.normal(size=(n, 3)).astype(np.float32)
    nnz = int(rng.integers(1, 3 * n))
    return {
        "sample_id": f"id{i:04d}", "source": f"mesh{i}.ply", "domain": "mesh",
        "pos": pos, "faces": faces.astype(np.int64), "edge_index": edge_index.astype(np.int64),
        "edge_dist": np.linalg.norm(pos[edge_index[0]] - pos[edge_index[1]], axis=1).astype(np.float32),
        "mass": rng.random(n).astype(np.float32),
        "evecs": rng.normal(size=(n, k)).astype(np.float32),
        "evals": np.sort(rng.random(k)).astype(np.float32),
        "geo_sources": rng.choice(n, size=sources, replace=False).astype(np.int64),
        "geo_dist": rng.random((sources, n)).astype(np.float32),
        "grad_x_index": rng.integers(0, n, size=(2, nnz)).astype(np.int64),
        "grad_x_value": rng.normal(size=nnz).astype(np.float32),
        "y": np.int64(i % 3),
        "nside": np.int64(4),
        "node_ids": np.array([f"v{j}" for j in range(n)]),
    }


def make_dataset(uri: str, count: int, shard_sizes=(7, 9), row_group_size: int = 3, seed: int = 0):
    """`count` rows in shards of the given sizes (cycled), small row groups; returns the rows."""
    rng = np.random.default_rng(seed)
    rows = [mesh_row(i, rng) for i in range(count)]
    shards, start, j = [], 0, 0
    while start < count:
        size = shard_sizes[j % len(shard_sizes)]
        shards.append(write_shard(uri, rows[start:start + size], row_group_size=row_group_size))
        start, j = start + size, j + 1
    commit_version(uri, shards, [])
    return rows


def assert_same_sample(got, ref):
    """A loader sample (tensors, strings) holds the same dtypes, shapes and bytes as `ref`."""
    assert set(got) == set(ref)
    for key, value in ref.items():
        if isinstance(value, str):
            assert got[key] == value
        elif np.asarray(value).dtype.kind == "U":
            assert list(got[key]) == list(value)
        else:
            tensor = got[key]
            assert isinstance(tensor, torch.Tensor), key
            assert tensor.numpy().dtype == np.asarray(value).dtype, key
            assert tuple(tensor.shape) == np.shape(value), key
            assert tensor.numpy().tobytes() == np.asarray(value).tobytes(), key
