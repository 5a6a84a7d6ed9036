"""A training run's folder (local or any fsspec URI), every file replaced atomically:

    <output>/<run>/checkpoints/last.pt   state dicts of model, optimizer, AMP scaler + epoch (torch.save;
                                         loads with torch.load(weights_only=True): tensors and plain values only)
    <output>/<run>/metrics.parquet       one row per epoch: epoch, train_loss, val_<metric>, test_<metric>, seconds
                                         (whole epoch), train_seconds (training pass), data_seconds (of which
                                         waiting for the loader), steps
    <output>/<run>/metrics.png           train loss and held-out metric per epoch
    <output>/<run>/lineage.json          dataset URI, version, sha256 of its manifest, the spec, code versions
    <output>/<run>/result.json           the held-out metric of the model and of the trivial baseline
    <output>/latest.json                 which run of this output finished last, and its result
"""
from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from storage.fs import join, read_bytes, resolve, write_bytes_atomic


class RunFolder:
    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.root = resolve(uri)

    def path(self, name: str) -> str:
        return join(self.root, name)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        write_bytes_atomic(self.fs, self.path(name), data)

    def write_json(self, name: str, value: Any) -> None:
        self.write_bytes(name, json.dumps(value, indent=2, default=str).encode())

    def read_json(self, name: str) -> Any:
        return json.loads(read_bytes(self.fs, self.path(name)))

    def save_checkpoint(self, state: dict[str, Any], name: str = "checkpoints/last.pt") -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.write_bytes(name, buffer.getvalue())

    def load_checkpoint(self, name: str = "checkpoints/last.pt") -> dict[str, Any] | None:
        """The checkpoint, or None if the run has none yet; never unpickles arbitrary objects."""
        if not self.exists(name):
            return None
        return torch.load(io.BytesIO(read_bytes(self.fs, self.path(name))), weights_only=True,
                          map_location="cpu")

    def write_metrics(self, rows: list[dict[str, Any]], metric: str) -> None:
        schema = pa.schema([("epoch", pa.int64()), ("train_loss", pa.float64()),
                            (f"val_{metric}", pa.float64()), (f"test_{metric}", pa.float64()),
                            ("seconds", pa.float64()), ("train_seconds", pa.float64()),
                            ("data_seconds", pa.float64()), ("steps", pa.int64())])
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
        self.write_bytes("metrics.parquet", sink.getvalue())

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.exists("metrics.parquet"):
            return []
        with self.fs.open(self.path("metrics.parquet"), "rb") as fh:
            return pq.read_table(fh).to_pylist()

    def plot(self, rows: list[dict[str, Any]], metric: str, baseline: float, title: str) -> None:
        """metrics.png: training loss (left) and held-out metric against the trivial baseline (right)."""
        import matplotlib
        matplotlib.use("Agg")   # files only; no display needed
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.4), dpi=100)
        loss_ax, metric_ax = fig.subplots(1, 2)
        epochs = [r["epoch"] for r in rows]
        loss_ax.plot(epochs, [r["train_loss"] for r in rows], color="tab:blue")
        loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title=title)
        for split, style in (("test", "-"), ("val", "--")):
            values = [r.get(f"{split}_{metric}") for r in rows]
            if any(v is not None for v in values):
                metric_ax.plot(epochs, values, style, label=f"model, {split}")
        metric_ax.axhline(baseline, color="gray", linestyle=":", label="trivial baseline, test")
        metric_ax.set(xlabel="epoch", ylabel=metric)
        metric_ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        self.write_bytes("metrics.png", buffer.getvalue())
