"""`to_pyg`: a sample or batch as a torch_geometric `Data` / `Batch`, when PyG is installed.

PyG is an optional extra (`pip install gdl-data[pyg]`). Without it `to_pyg` returns the dict
unchanged, so code can call it either way. With it, every column becomes an attribute of the
same name except `faces` (f, 3), which becomes PyG's `face` (3, f) as its mesh transforms expect.
A batch from collate_graphs becomes a `Batch` whose `batch`, `ptr` and offset index arrays are
ours; PyG's pooling and message passing work on it, `Batch.to_data_list()` does not (it needs
the slicing bookkeeping of `Batch.from_data_list`). A batch whose samples share geometry
(`geometry`, `geometry_index`) is expanded to one copy per sample first (collate.expand_geometry),
which is what PyG's layers index into.
"""
from __future__ import annotations

from typing import Any, Mapping


def pyg_available() -> bool:
    try:
        import torch_geometric.data  # noqa: F401
    except ImportError:
        return False
    return True


def to_pyg(sample_or_batch: Mapping[str, Any]) -> Any:
    """`Data` for one sample, `Batch` for a collate_graphs batch; the dict itself without PyG."""
    if not pyg_available():
        return sample_or_batch
    from torch_geometric.data import Batch, Data

    from gdl_data.loader.collate import expand_geometry, num_nodes

    fields = expand_geometry(sample_or_batch)
    if "faces" in fields:
        fields["face"] = fields.pop("faces").t().contiguous()
    if "ptr" in fields and "batch" in fields:
        return Batch(**fields)
    data = Data(**fields)
    data.num_nodes = num_nodes(sample_or_batch)
    return data
