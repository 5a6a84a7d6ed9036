"""Issue 14: data-parallel training on CPU (gloo), mid-epoch resume after a real kill, elastic resume.

The reference model is SchNet on toy molecules whose target counts their oxygens (built here with
the storage layer, as in test_training.py); the train split (18 samples) is a multiple of the
global batch (6), so every global batch splits 3 + 3 over two ranks.

Tolerance for "2 ranks = 1 process": DDP averages the two ranks' gradients in float32, one
process averages over the whole batch; the sums differ in rounding order only (~1e-7 relative
per step), which 6 Adam steps leave below 1e-5 (measured: max |difference| ~1e-6).
"""
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from gdl_data.errors import SpecError
from gdl_data.loader.sampler import GlobalBatchSampler
from pipelines.train_launch import launch
from pipelines.train_spec import load_train_spec
from pipelines.training import train
from training_samples import one_thread, toy_molecules  # noqa: F401 - one_thread: an autouse fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spec_file(tmp_path, output, **overrides):
    raw = {"name": "oxygens", "dataset": str(tmp_path / "mols"), "model": "schnet", "task": "graph_regression",
           "target": "prop_oxygens", "epochs": 2, "output": str(tmp_path / output), "seed": 3,
           "split": {"test": 0.25, "val": 0.0, "seed": 1},
           "hyper": {"lr": 3e-3, "batch_size": 6, "hidden": 16, "filters": 16, "interactions": 2,
                     "num_rbf": 12, "cutoff": 3.0}, **overrides}
    path = tmp_path / f"{output}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _weights(result):
    with open(f"{result['run']}/checkpoints/last.pt", "rb") as fh:
        return torch.load(io.BytesIO(fh.read()), weights_only=True)["model"]


@pytest.mark.parametrize("batch_size, steps", [(6, 6), (17, 4)])
def test_two_gloo_ranks_train_the_weights_of_one_process_with_the_same_global_batch(tmp_path, batch_size, steps):
    """batch 6: every global batch splits 3 + 3; batch 17: the last global batch holds 1 sample,
    so rank 1 has no part in it and waits in DDP's join while rank 0 steps alone."""
    toy_molecules(str(tmp_path / "mols"))
    hyper = {"lr": 3e-3, "batch_size": batch_size, "hidden": 16, "filters": 16, "interactions": 2,
             "num_rbf": 12, "cutoff": 3.0}
    one = train(_spec_file(tmp_path, "one", hyper=hyper))
    rows = []
    two = launch(_spec_file(tmp_path, "two", hyper=hyper), processes=2, device="cpu", progress=rows.append)
    assert two["processes"] == 2 and one["processes"] == 1
    assert [r["epoch"] for r in rows] == [1, 2]                  # rank 0's rows reached this process
    assert two["steps"] == one["steps"] == steps                  # 18 train samples per epoch, 2 epochs
    assert two["data_order_sha256"] == one["data_order_sha256"]   # the same global batches in order
    a, b = _weights(one), _weights(two)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert 0 <= worst < 1e-5, worst
    assert two["model_metric"] == pytest.approx(one["model_metric"], rel=1e-4)
    run = os.path.basename(two["run"])
    assert sorted(os.listdir(tmp_path / "two" / run / "checkpoints")) == ["last.pt"]   # rank 0 only wrote


def test_a_parallel_run_refuses_what_it_cannot_split(tmp_path):
    toy_molecules(str(tmp_path / "mols"))
    spec = _spec_file(tmp_path, "runs", hyper={"batch_size": 1, "hidden": 16})
    with pytest.raises(SpecError, match="batch_size is the batch of all processes"):
        launch(spec, processes=2, device="cpu")


def _checkpoint_steps(path):
    try:
        with open(path, "rb") as fh:
            return torch.load(io.BytesIO(fh.read()), weights_only=True)["steps"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


def _kill_at_step(spec_path, run_folder, step, processes=1):
    """Train in a new process (and its ranks) and SIGKILL them all once a checkpoint at >= step exists."""
    code = (f"import torch; torch.set_num_threads(1)\n"
            f"from pipelines.train_launch import launch\nlaunch({spec_path!r}, processes={processes}, device='cpu')")
    env = {**os.environ, "PYTHONPATH": ROOT}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = None
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        runs = os.listdir(run_folder) if os.path.isdir(run_folder) else []
        checkpoint = checkpoint or next((os.path.join(run_folder, r, "checkpoints", "last.pt") for r in runs
                                         if os.path.isdir(os.path.join(run_folder, r))), None)
        if checkpoint and _checkpoint_steps(checkpoint) >= step:
            os.killpg(child.pid, signal.SIGKILL)   # the child's own session: it and its ranks
            break
        time.sleep(0.01)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    return _checkpoint_steps(checkpoint)


def test_killed_at_a_random_step_a_run_resumes_to_the_same_batches_and_bit_identical_weights(tmp_path):
    toy_molecules(str(tmp_path / "mols"))
    hyper = {"lr": 3e-3, "batch_size": 2, "hidden": 16, "filters": 16, "interactions": 2, "num_rbf": 12,
             "cutoff": 3.0}
    uninterrupted = train(_spec_file(tmp_path, "full", epochs=3, hyper=hyper, checkpoint_every=1))
    total = uninterrupted["steps"]                                   # 9 steps per epoch, 27 in all
    step = int(np.random.default_rng().integers(1, total - 1))
    print(f"kill at step >= {step} of {total}")
    spec = _spec_file(tmp_path, "killed", epochs=3, hyper=hyper, checkpoint_every=1)
    killed_at = _kill_at_step(spec, str(tmp_path / "killed"), step)
    assert step <= killed_at < total
    rows = []
    resumed = train(spec, progress=rows.append)
    assert rows[0]["epoch"] == killed_at // 9 + 1                   # continued where it was killed
    assert resumed["steps"] == total
    assert resumed["data_order_sha256"] == uninterrupted["data_order_sha256"]
    a, b = _weights(uninterrupted), _weights(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["model_metric"] == uninterrupted["model_metric"]
    metrics = [os.path.join(r["run"], "metrics.parquet") for r in (uninterrupted, resumed)]
    import pyarrow.parquet as pq
    full, again = (pq.read_table(m).to_pylist() for m in metrics)
    assert [r["train_loss"] for r in full] == [r["train_loss"] for r in again]


def test_a_two_rank_run_killed_mid_epoch_finishes_on_one_process_seeing_every_sample_once(tmp_path):
    toy_molecules(str(tmp_path / "mols"))
    hyper = {"lr": 3e-3, "batch_size": 2, "hidden": 16, "filters": 16, "interactions": 2, "num_rbf": 12,
             "cutoff": 3.0}
    single = train(_spec_file(tmp_path, "single", hyper=hyper))
    spec = _spec_file(tmp_path, "elastic", hyper=hyper, checkpoint_every=1)
    killed_at = _kill_at_step(spec, str(tmp_path / "elastic"), 4, processes=2)
    assert 4 <= killed_at < single["steps"]
    resumed = launch(spec, processes=1)
    # the same global batches in the same order as one uninterrupted process: each sample once per epoch
    assert resumed["data_order_sha256"] == single["data_order_sha256"]
    a, b = _weights(single), _weights(resumed)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_the_sampler_resumed_on_one_rank_covers_what_two_ranks_left_exactly_once():
    indices = np.arange(100, 153)                                    # 53 samples, global batch 8
    ranks = [GlobalBatchSampler(indices, 8, seed=5, rank=r, world_size=2) for r in range(2)]
    seen = []
    for sampler in ranks:
        sampler.set_epoch(4)
    iterators = [iter(s) for s in ranks]
    for _ in range(3):                                               # three global steps on 2 ranks
        for sampler, it in zip(ranks, iterators):
            seen += next(it)
            sampler.step()
    one = GlobalBatchSampler(indices, 8, seed=5, rank=0, world_size=1)
    one.load_state_dict(ranks[0].state_dict())
    for batch in one:
        seen += batch
        one.step()
    assert sorted(seen) == indices.tolist()                          # every sample exactly once
    with pytest.raises(ValueError, match="belongs to other data"):
        GlobalBatchSampler(indices[:-1], 8, seed=5).load_state_dict(ranks[0].state_dict())


def test_the_training_deployment_asks_for_the_specs_number_of_processes(tmp_path):
    from flows.serve import plan_deployments
    plan, = plan_deployments([_spec_file(tmp_path, "runs", processes=2)])
    assert plan.flow == "train" and plan.parameters["processes"] == 2
    assert load_train_spec(_spec_file(tmp_path, "runs", processes=2)).run_key() == \
        load_train_spec(_spec_file(tmp_path, "runs")).run_key()   # another N resumes the same run
