"""`train(spec)`: fit a reference model to a cached dataset, with checkpoints, metrics and lineage.

On CUDA it trains in mixed precision (torch.autocast float16 + GradScaler); on CPU in float32,
and there a run repeats exactly from its seed: the weights come from `seed`, and each epoch
reseeds the shuffling and dropout from (seed, epoch), so a run resumed from its checkpoint
ends with the same weights as one that was never interrupted. Each epoch appends a row to
the metrics table, replaces the checkpoint, and reports through `progress` and the
`gdl.training` logger. Files are described in pipelines/train_run.py.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Callable

import numpy as np
import torch

import gdl_data
from gdl_data.loader import collate_graphs, to_device
from gdl_data.models import build_model
from gdl_data.models.features import assemble_features
from pipelines import train_tasks
from pipelines.train_inputs import TrainingData, prepare
from pipelines.train_run import RunFolder
from pipelines.train_spec import TrainSpec, load_train_spec
from storage.fs import join

log = logging.getLogger("gdl.training")
Progress = Callable[[dict[str, Any]], None]   # called with each epoch's metrics row (+ "epochs")


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


class Trainer:
    """One run: the model, its optimizer and scaler, and the steps over the data."""

    def __init__(self, spec: TrainSpec, data: TrainingData, device: torch.device):
        self.spec, self.data, self.device, self.task = spec, data, device, data.task
        self.amp = device.type == "cuda"
        torch.manual_seed(spec.seed)
        first = 0 if data.by_nodes else int(data.split["train"][0])
        first = self.to_device(collate_graphs([data.dataset[first]]))   # to count input channels
        in_channels = assemble_features(first, spec.features).shape[1]
        self.model = build_model(spec.model, in_channels, data.out_channels, node_level=self.task.node_level,
                                 **spec.model_kwargs).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec.optimizer("lr"),
                                          weight_decay=spec.optimizer("weight_decay"))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.shuffle = torch.Generator()   # reseeded from (seed, epoch) before every epoch
        options = {"num_workers": spec.num_workers, "pin_memory": self.amp, "spawn": device.type == "cuda"}
        batch_size = spec.optimizer("batch_size")
        self.loaders = {"train": data.loader("train", batch_size, generator=self.shuffle, **options),
                        "val": data.loader("val", batch_size, **options),
                        "test": data.loader("test", batch_size, **options)}
        # Regression learns standardised targets; predictions are mapped back before the metric.
        train = data.train_targets
        self.shift = 0.0 if self.task.classification else float(np.mean(train))
        self.scale = 1.0 if self.task.classification else float(np.std(train) or 1.0)

    def to_device(self, batch: dict) -> dict:
        return to_device(batch, self.device)

    def forward(self, batch: dict, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = assemble_features(batch, self.spec.features)   # in float32, outside autocast
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.model(x, batch)
        target = batch["y"]
        mask = self.data.node_mask(part, batch)
        if mask is not None:
            out, target = out[mask], target[mask]
        return out.float(), target

    def train_epoch(self, epoch: int) -> dict[str, float]:
        torch.manual_seed(epoch_seed(self.spec.seed, epoch))   # dropout, sign flips: same on resume
        self.shuffle.manual_seed(epoch_seed(self.spec.seed, epoch))
        self.model.train()
        total, count, steps, waiting = 0.0, 0, 0, 0.0
        start = time.perf_counter()
        iterator = iter(self.loaders["train"])
        while True:
            wait = time.perf_counter()
            batch = next(iterator, None)
            waiting += time.perf_counter() - wait
            if batch is None:
                break
            out, target = self.forward(self.to_device(batch), "train")
            if not self.task.classification:
                target = (target.float() - self.shift) / self.scale
            loss = train_tasks.loss(self.task, out, target)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += float(loss.detach()) * len(target)
            count += len(target)
            steps += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return {"train_loss": total / max(count, 1), "train_seconds": time.perf_counter() - start,
                "data_seconds": waiting, "steps": steps}

    @torch.no_grad()
    def evaluate(self, part: str) -> float | None:
        if self.loaders[part] is None:
            return None
        self.model.eval()
        predictions = []
        for batch in self.loaders[part]:
            out, _ = self.forward(self.to_device(batch), part)
            predictions.append(out.cpu().numpy())
        prediction = np.concatenate(predictions)
        if not self.task.classification:
            prediction = prediction * self.scale + self.shift
        return train_tasks.metric(self.task, prediction, self.data.held_out_targets[part])

    def state(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "target_shift": self.shift, "target_scale": self.scale}

    def load_state(self, state: dict[str, Any]) -> int:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        return int(state["epoch"])


def run_id(spec: TrainSpec, content_sha256: str) -> str:
    """Folder of a run: a hash of the settings and of the data's content. A new dataset version
    with other samples starts a new run; one that only re-committed the same shards resumes."""
    digest = hashlib.sha256(f"{spec.run_key()}:{content_sha256}".encode()).hexdigest()[:12]
    return f"{spec.name}-{digest}"


def train(spec: TrainSpec | str, device: str | torch.device | None = None,
          progress: Progress | None = None) -> dict[str, Any]:
    """Train `spec` (a TrainSpec or a spec file path), resuming its run if one was started.

    device: "cuda", "cpu", ... (default: CUDA when available). progress: called after every
    epoch with its metrics row: epoch, epochs, train_loss, val_<metric>, test_<metric> (None
    without that split), seconds, train_seconds, data_seconds, steps; an exception it raises
    stops training after that epoch's checkpoint (a re-run resumes from there).

    Returns the result (also written as result.json): name, run (folder URI), model, task,
    metric ("accuracy" or "mae"), epochs, model_metric and baseline_metric on the test split,
    baseline (kind and constant prediction), val_metric, wall_seconds, device, dataset,
    dataset_version, manifest_sha256.
    """
    spec = load_train_spec(spec) if isinstance(spec, str) else spec
    device = pick_device(device)
    data = prepare(spec)
    task = data.task
    folder = RunFolder(join(spec.output.rstrip("/"), run_id(spec, data.content_sha256)))
    trainer = Trainer(spec, data, device)
    baseline = train_tasks.trivial_baseline(task, data.train_targets, data.held_out_targets["test"])
    if data.classes is not None:   # name the majority class as the source does, not by its index
        baseline["prediction"] = data.classes[int(baseline["prediction"])].item()
    lineage = {"dataset": spec.dataset, "dataset_version": data.version,
               "manifest_sha256": data.manifest_sha256, "content_sha256": data.content_sha256,
               "spec": spec.to_dict(), "spec_path": spec.spec_path,
               "classes": None if data.classes is None else data.classes.tolist(),
               "split_sizes": {k: int(len(v)) for k, v in data.split.items()},
               "split_unit": "nodes" if data.by_nodes else "samples",
               "split": {k: v.tolist() for k, v in data.split.items()},
               "code": {"gdl_data": gdl_data.__version__, "torch": torch.__version__}}
    folder.write_json("lineage.json", lineage)

    checkpoint = folder.load_checkpoint()
    done = trainer.load_state(checkpoint) if checkpoint else 0
    rows = [r for r in folder.read_metrics() if r["epoch"] <= done]
    if done:
        log.info("%s: resuming %s after epoch %d of %d", spec.name, folder.uri, done, spec.epochs)
    metric = task.metric
    for epoch in range(done + 1, spec.epochs + 1):
        start = time.perf_counter()
        row = {"epoch": epoch, **trainer.train_epoch(epoch)}
        row[f"val_{metric}"] = trainer.evaluate("val")
        row[f"test_{metric}"] = trainer.evaluate("test")
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        folder.save_checkpoint(trainer.state(epoch))
        folder.write_metrics(rows, metric)
        log.info("%s epoch %d/%d: train_loss %.4f, test %s %.4f (%.2fs)", spec.name, epoch, spec.epochs,
                 row["train_loss"], metric, row[f"test_{metric}"], row["seconds"])
        if progress is not None:
            progress({**row, "epochs": spec.epochs})
    if rows:
        folder.plot(rows, metric, baseline[metric], f"{spec.name}: {spec.model}")
    final = rows[-1] if rows else {}
    result = {"name": spec.name, "run": folder.uri, "model": spec.model, "task": task.name, "metric": metric,
              "epochs": len(rows), "model_metric": final.get(f"test_{metric}"), "baseline": baseline,
              "baseline_metric": baseline[metric], "val_metric": final.get(f"val_{metric}"),
              "wall_seconds": float(sum(r["seconds"] for r in rows)), "device": str(device),
              "dataset": spec.dataset, "dataset_version": data.version, "manifest_sha256": data.manifest_sha256}
    folder.write_json("result.json", result)
    RunFolder(spec.output).write_json("latest.json", result)
    log.info("%s: test %s %.4f (trivial baseline, %s: %.4f) after %d epochs", spec.name, metric,
             result["model_metric"], baseline["kind"], baseline[metric], len(rows))
    return result
