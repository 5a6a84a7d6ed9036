"""Batching: graph operations on a collated batch equal the same operations per sample, computed
with numpy / scipy on each sample alone; padding masks; PyG interop; device moves."""
import numpy as np
import pytest
import scipy.sparse
import torch
from torch.utils.data import DataLoader

from gdl_data.loader import (GeometryStream, collate_graphs, collate_padded, prefetch, to_device,
                             to_pyg)
from gdl_data.loader.tensors import sample_tensors
from loader_samples import make_dataset, mesh_row

B = 5


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(11)
    return [mesh_row(i, rng) for i in range(B)]


@pytest.fixture(scope="module")
def batch(rows):
    return collate_graphs([sample_tensors(r) for r in rows])


def test_batch_and_ptr_follow_the_node_counts(rows, batch):
    counts = [len(r["pos"]) for r in rows]
    assert batch["ptr"].tolist() == [0, *np.cumsum(counts)]
    assert batch["batch"].tolist() == sum(([b] * n for b, n in enumerate(counts)), [])
    assert batch["pos"].shape == (sum(counts), 3) and batch["evecs"].shape == (sum(counts), 4)
    assert batch["evals"].shape == (B, 4) and batch["y"].tolist() == [r["y"] for r in rows]
    assert batch["sample_id"] == [r["sample_id"] for r in rows]


def test_neighbour_sum_and_degree_on_the_batch_equal_per_sample_results(rows, batch):
    src, dst = batch["edge_index"]
    summed = torch.zeros_like(batch["pos"]).index_add_(0, dst, batch["pos"][src])
    degree = torch.bincount(src, minlength=len(batch["pos"]))
    for b, r in enumerate(rows):
        lo, hi = batch["ptr"][b], batch["ptr"][b + 1]
        ref = np.zeros_like(r["pos"])
        np.add.at(ref, r["edge_index"][1], r["pos"][r["edge_index"][0]])
        np.testing.assert_allclose(summed[lo:hi].numpy(), ref, rtol=1e-5, atol=1e-5)
        assert degree[lo:hi].tolist() == np.bincount(r["edge_index"][0], minlength=len(r["pos"])).tolist()
    # edge-level columns stay aligned with the offset edges
    lengths = (batch["pos"][src] - batch["pos"][dst]).norm(dim=1)
    np.testing.assert_allclose(lengths.numpy(), batch["edge_dist"].numpy(), rtol=1e-5)


def test_faces_and_geodesic_sources_point_at_their_own_samples_vertices(rows, batch):
    face_pos = batch["pos"][batch["faces"]]
    assert torch.equal(face_pos, torch.cat([torch.from_numpy(r["pos"][r["faces"]]) for r in rows]))
    assert torch.equal(batch["pos"][batch["geo_sources"]],
                       torch.cat([torch.from_numpy(r["pos"][r["geo_sources"]]) for r in rows]))
    assert batch["geo_dist"].shape == (2, len(batch["pos"]))


def test_sparse_operator_is_block_diagonal(rows, batch):
    h = torch.randn(len(batch["pos"]), 3, generator=torch.Generator().manual_seed(0))
    got = torch.sparse.mm(batch["grad_x"], h)
    for b, r in enumerate(rows):
        n = len(r["pos"])
        op = scipy.sparse.coo_matrix((r["grad_x_value"], tuple(r["grad_x_index"])), shape=(n, n))
        lo, hi = batch["ptr"][b], batch["ptr"][b + 1]
        np.testing.assert_allclose(got[lo:hi].numpy(), op @ h[lo:hi].numpy(), rtol=1e-4, atol=1e-5)
    assert "grad_x_index" not in batch and "grad_x_value" not in batch


def test_spectral_projection_with_segment_ops_equals_per_sample_matrix_products(rows, batch):
    # the module docstring's recipe: no Python loop over samples
    h = torch.randn(len(batch["pos"]), 2, generator=torch.Generator().manual_seed(1))
    w = batch["evecs"][:, :, None] * (batch["mass"][:, None] * h)[:, None, :]
    coef = torch.zeros(B, 4, 2).index_add_(0, batch["batch"], w)
    for b, r in enumerate(rows):
        lo, hi = batch["ptr"][b], batch["ptr"][b + 1]
        ref = r["evecs"].T @ (r["mass"][:, None] * h[lo:hi].numpy())
        np.testing.assert_allclose(coef[b].numpy(), ref, rtol=1e-4, atol=1e-5)


def test_node_level_labels_are_concatenated_graph_labels_stacked(rows):
    samples = [sample_tensors({**r, "y": np.arange(len(r["pos"]))}) for r in rows]
    assert collate_graphs(samples)["y"].shape == (sum(len(r["pos"]) for r in rows),)
    with pytest.raises(ValueError, match=r"sample 1 \(id0001\) differs from sample 0 in columns \['mass'\]"):
        collate_graphs([sample_tensors(rows[0]), sample_tensors({k: v for k, v in rows[1].items()
                                                                 if k != "mass"})])
    broken = {**rows[2], "grad_x_index": rows[2]["grad_x_index"] + len(rows[2]["pos"])}
    for collate in (collate_graphs, collate_padded):
        with pytest.raises(ValueError, match=r"sample 1 \(id0002\): 'grad_x_index' holds node ids outside"):
            collate([sample_tensors(rows[0]), sample_tensors(broken)])
    with pytest.raises(ValueError, match="cannot tell its number of nodes"):
        collate_graphs([{"edge_index": torch.zeros(2, 1, dtype=torch.long)}])


def test_padded_batch_mask_values_and_padding(rows):
    padded = collate_padded([sample_tensors(r) for r in rows])
    counts = [len(r["pos"]) for r in rows]
    n_max = max(counts)
    assert padded["pos"].shape == (B, n_max, 3) and padded["mask"].shape == (B, n_max)
    for b, r in enumerate(rows):
        n = counts[b]
        assert padded["mask"][b].tolist() == [True] * n + [False] * (n_max - n)
        assert torch.equal(padded["pos"][b, :n], torch.from_numpy(r["pos"]))
        assert not padded["pos"][b, n:].any()
        e = r["edge_index"].shape[1]
        assert torch.equal(padded["edge_index"][b, :, :e], torch.from_numpy(r["edge_index"]))
        assert (padded["edge_index"][b, :, e:] == -1).all()
        assert padded["edge_mask"][b].sum() == e
        assert torch.equal(padded["geo_dist"][b, :, :n], torch.from_numpy(r["geo_dist"]))
    h = torch.randn(B, n_max, 2, generator=torch.Generator().manual_seed(2))
    applied = torch.bmm(padded["grad_x"], h)
    for b, r in enumerate(rows):
        n = counts[b]
        op = scipy.sparse.coo_matrix((r["grad_x_value"], tuple(r["grad_x_index"])), shape=(n, n))
        np.testing.assert_allclose(applied[b, :n].numpy(), op @ h[b, :n].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
def test_collate_in_workers_gives_the_same_batches(tmp_path):
    uri = str(tmp_path / "ds")
    make_dataset(uri, 11)
    stream = GeometryStream(uri, columns=["sample_id", "pos", "faces", "edge_index",
                                          "grad_x_index", "grad_x_value"])
    here = list(DataLoader(stream, batch_size=4, collate_fn=collate_graphs))
    there = list(DataLoader(stream, batch_size=4, collate_fn=collate_graphs, num_workers=1))
    assert len(here) == len(there) == 3
    for a, b in zip(here, there):
        assert a["sample_id"] == b["sample_id"]
        for key in ("pos", "faces", "edge_index", "batch", "ptr"):
            assert torch.equal(a[key], b[key])
        assert torch.equal(a["grad_x"].to_dense(), b["grad_x"].to_dense())


def test_to_pyg_without_pyg_returns_the_dict(monkeypatch, batch):
    monkeypatch.setattr("gdl_data.loader.pyg.pyg_available", lambda: False)
    assert to_pyg(batch) is batch


def test_to_pyg_gives_data_and_batch(rows, batch):
    pytest.importorskip("torch_geometric")
    from torch_geometric.data import Batch, Data
    from torch_geometric.utils import degree

    data = to_pyg(sample_tensors(rows[0]))
    assert isinstance(data, Data) and data.num_nodes == len(rows[0]["pos"])
    assert torch.equal(data.face, torch.from_numpy(rows[0]["faces"]).t())
    pyg_batch = to_pyg(batch)
    assert isinstance(pyg_batch, Batch) and pyg_batch.num_graphs == B
    assert torch.equal(degree(pyg_batch.edge_index[0], pyg_batch.num_nodes).long(),
                       torch.bincount(batch["edge_index"][0], minlength=len(batch["pos"])))
    # PyG's own batching of the same samples gives the same offset edges
    reference = Batch.from_data_list([Data(pos=torch.from_numpy(r["pos"]),
                                           edge_index=torch.from_numpy(r["edge_index"])) for r in rows])
    assert torch.equal(reference.edge_index, batch["edge_index"])
    assert torch.equal(reference.batch, batch["batch"]) and torch.equal(reference.ptr, batch["ptr"])


def test_to_device_moves_tensors_and_leaves_strings(batch):
    moved = to_device({k: v for k, v in batch.items() if k != "grad_x"}, "meta")
    assert moved["pos"].device.type == "meta" and moved["sample_id"] == batch["sample_id"]
    assert next(iter(prefetch([batch], "cpu")))["pos"] is batch["pos"]


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
@pytest.mark.gpu
def test_pinned_batches_reach_the_gpu_intact(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    uri = str(tmp_path / "ds")
    make_dataset(uri, 11)
    stream = GeometryStream(uri, columns=["pos", "edge_index", "grad_x_index", "grad_x_value"])
    loader = DataLoader(stream, batch_size=4, collate_fn=collate_graphs, pin_memory=True,
                        num_workers=1)
    host = list(DataLoader(stream, batch_size=4, collate_fn=collate_graphs))
    for cpu, gpu in zip(host, prefetch(loader, "cuda")):
        assert gpu["pos"].is_cuda and gpu["grad_x"].is_cuda
        assert torch.equal(gpu["pos"].cpu(), cpu["pos"])
        assert torch.equal(gpu["edge_index"].cpu(), cpu["edge_index"])
        h = torch.ones(len(cpu["pos"]), 1)
        torch.testing.assert_close(torch.sparse.mm(gpu["grad_x"], h.cuda()).cpu(),
                                   torch.sparse.mm(cpu["grad_x"], h))
