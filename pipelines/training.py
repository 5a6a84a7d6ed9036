"""`train(spec)`: fit a reference model to a cached dataset, with checkpoints, metrics and lineage.

On CUDA it trains in mixed precision (torch.autocast float16 + GradScaler); on CPU in float32,
and there a run repeats exactly from its seed: the weights come from `seed`, each epoch reseeds
dropout from (seed, epoch) and draws its batches from GlobalBatchSampler
(gdl_data/loader/sampler.py). A checkpoint holds the model, the optimizer, the sampler's
position, the RNG state and the epoch's running totals; it is written after every epoch and,
with `checkpoint_every: N`, every N steps. A run killed at any step resumes from its last
checkpoint with the batches an uninterrupted run would have drawn and, on CPU, ends with the
same weights bit for bit; `data_order_sha256` (in the checkpoint and result.json) chains the
global batches in the order they were used, so two runs that saw the same batches in the same
order report the same digest.

Data-parallel: run inside an initialised torch.distributed process group (pipelines/train_launch.py
starts one), each rank trains a DDP replica on its part of every global batch (`batch_size` is
the batch of the whole job) and weighs its loss by its share of the global batch, so the
gradient is the one a single process would compute on the global batch. Training loss and
held-out predictions are reduced across ranks; only rank 0 writes files. Each epoch writes its
metrics row before the checkpoint that records the epoch as done, so a kill between the two
re-trains that epoch and rewrites its row rather than losing it. Files: pipelines/train_run.py.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

import gdl_data
from gdl_data.errors import SpecError
from gdl_data.loader import collate_graphs, to_device
from gdl_data.loader.sampler import GlobalBatchSampler
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


def world() -> tuple[int, int]:
    """(rank, world_size) of this process in torch.distributed, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class Totals:
    """An epoch's running sums, saved in mid-epoch checkpoints so that a resumed epoch's row
    is the uninterrupted one's."""

    loss: float = 0.0            # sum over loss terms (samples or nodes) of the loss
    items: int = 0               # loss terms
    steps: int = 0
    train_seconds: float = 0.0
    data_seconds: float = 0.0    # of which waiting for the loader

    def reduced(self) -> "Totals":
        """Loss and items summed over ranks; steps and times are rank 0's (ranks step together)."""
        if world()[1] == 1:
            return Totals(**asdict(self))
        sums = torch.tensor([self.loss, float(self.items)], dtype=torch.float64)
        dist.all_reduce(sums)
        return Totals(float(sums[0]), int(sums[1]), self.steps, self.train_seconds, self.data_seconds)


def gather_predictions(parts: list[np.ndarray]) -> np.ndarray:
    """This rank's predictions, concatenated with the other ranks' in rank order."""
    mine = np.concatenate(parts) if parts else None
    if world()[1] > 1:
        gathered: list[Any] = [None] * world()[1]
        dist.all_gather_object(gathered, mine)
        return np.concatenate([g for g in gathered if g is not None])
    return mine


class Trainer:
    """One run's model, optimizer, scaler and sampler, and the steps over the data."""

    def __init__(self, spec: TrainSpec, data: TrainingData, device: torch.device):
        self.spec, self.data, self.device, self.task = spec, data, device, data.task
        self.rank, self.world_size = world()
        self.amp = device.type == "cuda"
        torch.manual_seed(spec.seed)
        self.model = self._build_model()
        self.ddp = None
        if self.world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec.optimizer("lr"),
                                          weight_decay=spec.optimizer("weight_decay"))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        batch_size = spec.optimizer("batch_size")
        self.sampler = GlobalBatchSampler(data.items("train"), batch_size, shuffle=not data.by_nodes,
                                          seed=spec.seed, rank=self.rank, world_size=self.world_size)
        options = {"num_workers": spec.num_workers, "pin_memory": self.amp, "spawn": device.type == "cuda",
                   "batch_size": batch_size, "rank": self.rank, "world_size": self.world_size}
        self.loaders = {"train": data.loader("train", self.sampler, **options),
                        "val": data.loader("val", **options), "test": data.loader("test", **options)}
        # Regression learns standardised targets; predictions are mapped back before the metric.
        train = data.train_targets
        self.shift = 0.0 if self.task.classification else float(np.mean(train))
        self.scale = 1.0 if self.task.classification else float(np.std(train) or 1.0)
        self.steps, self.order_sha256 = 0, ""

    def _build_model(self) -> torch.nn.Module:
        first = int(self.data.items("train")[0])
        first = self.to_device(collate_graphs([self.data.dataset[first]]))   # to count input channels
        in_channels = assemble_features(first, self.spec.features).shape[1]
        return build_model(self.spec.model, in_channels, self.data.out_channels,
                           node_level=self.task.node_level, **self.spec.model_kwargs).to(self.device)

    def to_device(self, batch: dict) -> dict:
        return to_device(batch, self.device)

    def forward(self, batch: dict, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = assemble_features(batch, self.spec.features)   # in float32, outside autocast
        model = self.ddp if self.ddp is not None and part == "train" else self.model
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            out = model(x, batch)
        target = batch["y"]
        mask = self.data.node_mask(part, batch)
        if mask is not None:
            out, target = out[mask], target[mask]
        return out.float(), target

    def train_step(self, batch: dict, global_size: int) -> tuple[float, int]:
        """One optimizer step on this rank's part of a global batch; (mean loss, loss terms)."""
        out, target = self.forward(self.to_device(batch), "train")
        if not self.task.classification:
            target = (target.float() - self.shift) / self.scale
        loss = train_tasks.loss(self.task, out, target)
        # DDP averages gradients over ranks; weighing each rank's mean loss by its share of the
        # global batch makes that average the global batch's mean (exactly 1 in one process).
        weight = (len(batch["ptr"]) - 1) * self.world_size / global_size
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * weight if weight != 1 else loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach()), len(target)

    def _start_epoch(self, epoch: int, resume: dict[str, Any] | None) -> Totals:
        if resume is None:
            self.sampler.set_epoch(epoch)
            torch.manual_seed(epoch_seed(self.spec.seed, epoch))   # dropout, sign flips: same on resume
            return Totals()
        self.sampler.load_state_dict(resume["sampler"])
        torch.set_rng_state(resume["rng"])
        return Totals(**resume["totals"]) if self.rank == 0 else Totals()   # saved already reduced

    def _join(self) -> contextlib.AbstractContextManager:
        """Lets a rank with no part in the last, short global batch stop while the others step."""
        return self.ddp.join() if self.ddp is not None else contextlib.nullcontext()

    def train_epoch(self, epoch: int, resume: dict[str, Any] | None = None,
                    save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, float]:
        """Train one epoch (the rest of it when `resume` holds a mid-epoch state); `save` gets a
        checkpoint every `checkpoint_every` steps (on every rank: building one is collective)."""
        totals = self._start_epoch(epoch, resume)
        every = self.spec.checkpoint_every
        self.model.train()
        start = time.perf_counter()
        iterator = iter(self.loaders["train"])
        with self._join():
            while True:
                wait = time.perf_counter()
                batch = next(iterator, None)
                totals.data_seconds += time.perf_counter() - wait
                if batch is None:
                    break
                self._record_order(self.sampler.global_batch())
                loss, items = self.train_step(batch, self.sampler.step())
                totals.loss, totals.items = totals.loss + loss * items, totals.items + items
                totals.steps, self.steps = totals.steps + 1, self.steps + 1
                if save and every and self.steps % every == 0 and self.sampler.position < len(self.sampler.indices):
                    now = time.perf_counter()
                    totals.train_seconds, start = totals.train_seconds + now - start, now
                    save(self.state(epoch - 1, mid=self._mid_state(epoch, totals)))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        totals.train_seconds += time.perf_counter() - start
        total = totals.reduced()
        return {"train_loss": total.loss / max(total.items, 1), "train_seconds": total.train_seconds,
                "data_seconds": total.data_seconds, "steps": total.steps}

    def _record_order(self, global_batch: np.ndarray) -> None:
        text = self.order_sha256 + ":" + ",".join(map(str, global_batch.tolist()))
        self.order_sha256 = hashlib.sha256(text.encode()).hexdigest()

    def _mid_state(self, epoch: int, totals: Totals) -> dict[str, Any]:
        return {"epoch": epoch, "sampler": self.sampler.state_dict(), "rng": torch.get_rng_state(),
                "totals": asdict(totals.reduced())}

    @torch.no_grad()
    def evaluate(self, part: str) -> float | None:
        """The metric on `part`: each rank predicts its part of the split, rank order kept."""
        if self.loaders[part] is None:
            return None
        self.model.eval()
        parts = [self.forward(self.to_device(batch), part)[0].cpu().numpy() for batch in self.loaders[part]]
        prediction = gather_predictions(parts)
        if not self.task.classification:
            prediction = prediction * self.scale + self.shift
        return train_tasks.metric(self.task, prediction, self.data.held_out_targets[part])

    def state(self, epoch: int, mid: dict[str, Any] | None = None) -> dict[str, Any]:
        """Checkpoint: `epoch` epochs done, plus `mid`: how far the next one got (None at its start)."""
        return {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "target_shift": self.shift, "target_scale": self.scale,
                "steps": self.steps, "data_order_sha256": self.order_sha256, "mid": mid}

    def load_state(self, state: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """Restore a checkpoint; (epochs done, the mid-epoch state or None)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.steps, self.order_sha256 = int(state.get("steps", 0)), state.get("data_order_sha256", "")
        return int(state["epoch"]), state.get("mid")


def check_parallel(spec: TrainSpec, data: TrainingData, world_size: int) -> None:
    if world_size == 1:
        return
    if data.by_nodes:
        raise SpecError(f"training spec '{spec.name}': node classification of one graph trains on a single "
                        f"sample, which cannot be split across {world_size} processes; use processes: 1")
    if spec.optimizer("batch_size") < world_size:
        raise SpecError(f"training spec '{spec.name}': hyper.batch_size is the batch of all processes "
                        f"together; {spec.optimizer('batch_size')} leaves some of the {world_size} "
                        f"processes without samples; e.g. batch_size: {16 * world_size}")


def run_id(spec: TrainSpec, content_sha256: str) -> str:
    """Folder of a run: a hash of the settings and of the data's content. A new dataset version
    with other samples starts a new run; one that only re-committed the same shards resumes."""
    digest = hashlib.sha256(f"{spec.run_key()}:{content_sha256}".encode()).hexdigest()[:12]
    return f"{spec.name}-{digest}"


def lineage(spec: TrainSpec, data: TrainingData) -> dict[str, Any]:
    """What the run trained on: the dataset version, the spec, the split (indices and ids)."""
    return {"dataset": spec.dataset, "dataset_version": data.version,
            "manifest_sha256": data.manifest_sha256, "content_sha256": data.content_sha256,
            "spec": spec.to_dict(), "spec_path": spec.spec_path,
            "classes": None if data.classes is None else data.classes.tolist(),
            "split_sizes": {k: int(len(v)) for k, v in data.split.items()},
            "split_unit": "nodes" if data.by_nodes else "samples",
            "split": {k: v.tolist() for k, v in data.split.items()},
            "split_sample_ids": data.split_sample_ids(),
            "code": {"gdl_data": gdl_data.__version__, "torch": torch.__version__}}


def restore(folder: RunFolder, trainer: Trainer) -> tuple[int, dict[str, Any] | None]:
    """Rank 0 reads the run's checkpoint and sends it to the others; (epochs done, mid state)."""
    box = [folder.load_checkpoint() if trainer.rank == 0 else None]
    if trainer.world_size > 1:
        dist.broadcast_object_list(box, src=0)
    return trainer.load_state(box[0]) if box[0] else (0, None)


def train(spec: TrainSpec | str, device: str | torch.device | None = None,
          progress: Progress | None = None) -> dict[str, Any]:
    """Train `spec` (a TrainSpec or a spec file path), resuming its run if one was started.

    device: "cuda", "cpu", ... (default: CUDA when available). progress: called after every
    epoch with its metrics row: epoch, epochs, train_loss, val_<metric>, test_<metric> (None
    without that split), seconds, train_seconds, data_seconds, steps; an exception it raises
    stops training after that epoch's checkpoint (a re-run resumes from there). Inside a
    torch.distributed process group every rank calls this; rank 0 writes and reports.

    Returns the result (also written as result.json): name, run (folder URI), model, task,
    metric ("accuracy" or "mae"), epochs, model_metric and baseline_metric on the test split,
    baseline (kind and constant prediction), val_metric, wall_seconds, device, processes,
    steps, data_order_sha256, dataset, dataset_version, manifest_sha256.
    """
    spec = load_train_spec(spec) if isinstance(spec, str) else spec
    device = pick_device(device)
    data = prepare(spec)
    rank, world_size = world()
    check_parallel(spec, data, world_size)
    folder = RunFolder(join(spec.output.rstrip("/"), run_id(spec, data.content_sha256)))
    trainer = Trainer(spec, data, device)
    if rank == 0:
        folder.write_json("lineage.json", lineage(spec, data))
    done, mid = restore(folder, trainer)
    rows = [r for r in folder.read_metrics() if r["epoch"] <= done] if rank == 0 else []
    if done or mid:
        log.info("%s: resuming %s after epoch %d (+%d steps) of %d", spec.name, folder.uri, done,
                 mid["totals"]["steps"] if mid else 0, spec.epochs)
    save = folder.save_checkpoint if rank == 0 else (lambda state: None)
    metric = data.task.metric
    for epoch in range(done + 1, spec.epochs + 1):
        resume = mid if mid and mid["epoch"] == epoch else None
        row = {"epoch": epoch, **trainer.train_epoch(epoch, resume, save)}
        start = time.perf_counter()
        row[f"val_{metric}"] = trainer.evaluate("val")
        row[f"test_{metric}"] = trainer.evaluate("test")
        row["seconds"] = row["train_seconds"] + time.perf_counter() - start
        if rank == 0:   # the row first: a kill before the checkpoint re-trains the epoch, row kept
            rows.append(row)
            folder.write_metrics(rows, metric)
            folder.save_checkpoint(trainer.state(epoch))
            log.info("%s epoch %d/%d: train_loss %.4f, val %s %s, test %s %.4f (%.2fs)", spec.name, epoch,
                     spec.epochs, row["train_loss"], metric, row[f"val_{metric}"], metric,
                     row[f"test_{metric}"], row["seconds"])
            if progress is not None:
                progress({**row, "epochs": spec.epochs})
    return finish(spec, data, folder, trainer, rows)


def finish(spec: TrainSpec, data: TrainingData, folder: RunFolder, trainer: Trainer,
           rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's result; rank 0 writes result.json, latest.json and the plot."""
    metric = data.task.metric
    baseline = train_tasks.trivial_baseline(data.task, data.train_targets, data.held_out_targets["test"])
    if data.classes is not None:   # name the majority class as the source does, not by its index
        baseline["prediction"] = data.classes[int(baseline["prediction"])].item()
    final = rows[-1] if rows else {}
    result = {"name": spec.name, "run": folder.uri, "model": spec.model, "task": data.task.name,
              "metric": metric, "epochs": len(rows), "model_metric": final.get(f"test_{metric}"),
              "baseline": baseline, "baseline_metric": baseline[metric],
              "val_metric": final.get(f"val_{metric}"),
              "wall_seconds": float(sum(r["seconds"] for r in rows)), "device": str(trainer.device),
              "processes": trainer.world_size, "steps": trainer.steps,
              "data_order_sha256": trainer.order_sha256, "dataset": spec.dataset,
              "dataset_version": data.version, "manifest_sha256": data.manifest_sha256}
    if trainer.rank != 0:
        return result
    if rows:
        folder.plot(rows, metric, baseline[metric], f"{spec.name}: {spec.model}")
    folder.write_json("result.json", result)
    RunFolder(spec.output).write_json("latest.json", result)
    log.info("%s: test %s %.4f (trivial baseline, %s: %.4f) after %d epochs", spec.name, metric,
             result["model_metric"], baseline["kind"], baseline[metric], len(rows))
    return result
