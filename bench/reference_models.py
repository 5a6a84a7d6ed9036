"""The four reference models on their real tasks: held-out metric against the trivial baseline.

    python -m bench.reference_models [--workdir DIR] [--device cpu|cuda] [--epochs N] [--only karate,...]
                                     [--train-only] [--num-workers N] [--threads 1]

Materialises the raw data (pipelines/train_data.py), runs each preprocessing spec of
pipelines/reference_specs/ (unless --train-only: then the datasets must be under
DIR/datasets already), trains each training spec from scratch into DIR/bench-runs/<device>,
and prints per task: the model's and the trivial baseline's held-out metric, epochs, wall
time, the median training step, and the share of the training pass spent waiting for the
loader (1 - that is the device's busy fraction, up to host-side launch overhead). Epoch 1
(warm-up: first reads, CUDA context, kernel selection) is left out of the step figures.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from importlib import resources

TASKS = ("karate", "molecules", "spheres", "meshes")


def copy_specs(spec_dir: str) -> None:
    os.makedirs(spec_dir, exist_ok=True)
    for entry in resources.files("pipelines").joinpath("reference_specs").iterdir():
        if entry.name.endswith(".yaml"):
            with resources.as_file(entry) as src:
                shutil.copyfile(src, os.path.join(spec_dir, entry.name))


def preprocess(spec_path: str) -> float:
    from pipelines.execute import run_pipeline
    from pipelines.spec import load_spec

    start = time.perf_counter()
    manifest = run_pipeline(load_spec(spec_path), progress=False)
    print(f"  preprocessed {manifest['sample_count']} samples ({manifest['error_count']} failed) "
          f"in {time.perf_counter() - start:.1f}s")
    return time.perf_counter() - start


def step_figures(run: str) -> dict[str, float]:
    import pyarrow.parquet as pq

    rows = pq.read_table(os.path.join(run, "metrics.parquet")).to_pylist()[1:] or \
        pq.read_table(os.path.join(run, "metrics.parquet")).to_pylist()
    per_step = [r["train_seconds"] / max(r["steps"], 1) for r in rows]
    waiting = sum(r["data_seconds"] for r in rows) / max(sum(r["train_seconds"] for r in rows), 1e-9)
    return {"step_ms": 1000 * statistics.median(per_step), "loader_wait": waiting,
            "epoch_s": statistics.median(r["seconds"] for r in rows)}


def report_every(every: int):
    def report(row: dict) -> None:
        if row["epoch"] % every == 0 or row["epoch"] == row["epochs"]:
            metric = next(k for k in row if k.startswith("test_"))
            print(f"  epoch {row['epoch']}/{row['epochs']}: train_loss {row['train_loss']:.4f}, "
                  f"{metric} {row[metric]:.3f} ({row['seconds']:.2f}s)", flush=True)
    return report


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=".gdl-work/reference")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--epochs", type=int, default=None, help="override every spec's epochs")
    parser.add_argument("--only", default=",".join(TASKS))
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--num-workers", type=int, default=None, help="override every spec's num_workers")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared, oversubscribed machine torch's "
                             "OpenMP threads stall; index_add_ took 70 ms on 2 threads vs 0.04 ms on 1)")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)

    from pipelines.train_spec import load_train_spec
    from pipelines.training import pick_device, train

    spec_dir = os.path.join(args.workdir, "specs")
    if not args.train_only:
        from pipelines.train_data import materialise_reference_data
        materialise_reference_data(os.path.join(args.workdir, "raw"))
    copy_specs(spec_dir)
    device = pick_device(args.device)
    runs = os.path.join(args.workdir, "bench-runs", device.type)
    shutil.rmtree(runs, ignore_errors=True)
    results = []
    for task in args.only.split(","):
        print(f"{task}:")
        if not args.train_only:
            preprocess(os.path.join(spec_dir, f"{task}.data.yaml"))
        spec = load_train_spec(os.path.join(spec_dir, f"{task}.train.yaml"))
        spec = spec.with_overrides(output=os.path.join(runs, spec.name), epochs=args.epochs,
                                   num_workers=args.num_workers)
        result = train(spec, device=device, progress=report_every(10))
        result.update(step_figures(result["run"]))
        results.append(result)
        print(f"  {spec.model}: test {result['metric']} {result['model_metric']:.3f} vs "
              f"{result['baseline']['kind']} {result['baseline_metric']:.3f}; {result['epochs']} epochs "
              f"in {result['wall_seconds']:.1f}s on {result['device']}")
    print()
    print("| task | model | metric | model | trivial baseline | epochs | wall s | s/epoch | step ms | loader wait |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['name']} | {r['model']} | {r['metric']} (test) | {r['model_metric']:.3f} | "
              f"{r['baseline_metric']:.3f} ({r['baseline']['kind']}) | {r['epochs']} | {r['wall_seconds']:.1f} | "
              f"{r['epoch_s']:.2f} | {r['step_ms']:.1f} | {100 * r['loader_wait']:.0f}% |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=str)
    return results


if __name__ == "__main__":
    main()
