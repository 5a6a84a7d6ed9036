"""`launch(spec, processes)`: run `train` data-parallel on N local processes, or as one of torchrun's.

    gdl train SPEC --processes 2           # or `processes: 2` in the spec
    torchrun --nproc-per-node 2 -m pipelines.train_launch SPEC

N processes are started with torch.multiprocessing (spawn: a fresh interpreter each, safe with
CUDA), joined into a torch.distributed group on loopback (gloo on CPU, NCCL with one GPU per
rank), and each runs pipelines.training.train. Rank 0 sends each epoch's row and the result back
to this process, so `progress` callbacks (the Prefect flow's logger) run here. If any rank fails,
the others are stopped and the failure is raised here; a SpecError found before the start
(the spec, the dataset, the split) is raised as itself, before any process starts.
Under torchrun (RANK / WORLD_SIZE in the environment) the process group comes from the
environment and nothing is spawned.
"""
from __future__ import annotations

import os
import queue
import socket
import sys
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipelines.train_inputs import prepare
from pipelines.train_spec import TrainSpec, load_train_spec
from pipelines.training import Progress, check_parallel, pick_device, train

# A rank waits this long for the others at a collective before failing (instead of hanging).
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(spec: TrainSpec | str, processes: int | None = None, device: str | None = None,
           progress: Progress | None = None) -> dict[str, Any]:
    """Train on `processes` (default: the spec's `processes`) local processes; rank 0's result."""
    spec = load_train_spec(spec) if isinstance(spec, str) else spec
    n = processes or spec.processes
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():   # under torchrun
        dist.init_process_group(backend_for(pick_device(device)), timeout=COLLECTIVE_TIMEOUT)
        try:
            result = train(spec, device, progress)
            dist.barrier()      # as in _rank_main: no rank leaves while another uses the group
            return result
        finally:
            dist.destroy_process_group()
    if n == 1 or dist.is_initialized():
        return train(spec, device, progress)
    target = pick_device(device)
    if target.type == "cuda" and torch.cuda.device_count() < n:
        raise ValueError(f"{n} processes need {n} GPUs, one each; this machine has "
                         f"{torch.cuda.device_count()} (use --processes {torch.cuda.device_count() or 1})")
    check_parallel(spec, prepare(spec), n)   # spec and data problems, before any process starts
    return _spawn(spec, n, target, progress)


def _spawn(spec: TrainSpec, n: int, device: torch.device, progress: Progress | None) -> dict[str, Any]:
    messages = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(_rank_main, args=(n, free_port(), spec, device.type, messages),
                                 nprocs=n, join=False, start_method="spawn")
    result: dict[str, Any] = {}
    try:
        while True:
            finished = context.join(timeout=0.2)   # raises ProcessRaisedException if a rank failed
            while not messages.empty():
                kind, payload = messages.get()
                if kind == "row" and progress is not None:
                    progress(payload)
                elif kind == "result":
                    result = payload
            if finished:
                return result
    except mp.ProcessRaisedException as exc:   # its message is the rank's whole traceback
        _stop(context)
        last = [line for line in str(exc).strip().splitlines() if line.strip()][-1]
        raise RuntimeError(f"training rank {exc.error_index} of {n} failed: {last}") from None
    except BaseException:
        _stop(context)
        raise


def _stop(context: mp.ProcessContext) -> None:
    for process in context.processes:   # only the ranks this call started
        if process.is_alive():
            process.terminate()


def _rank_main(rank: int, n: int, port: int, spec: TrainSpec, device_type: str,
               messages: "queue.Queue") -> None:
    """One rank: join the group on loopback, train, send rank 0's rows and result back."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:   # N ranks share the cores: one rank's default of all cores would oversubscribe them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n))
    dist.init_process_group(backend_for(device), rank=rank, world_size=n, timeout=COLLECTIVE_TIMEOUT)
    try:
        report = (lambda row: messages.put(("row", row))) if rank == 0 else None
        result = train(spec, device, report)
        if rank == 0:
            messages.put(("result", result))
        # Every rank done before any tears the group down: rank 0 hosts the rendezvous store,
        # and a rank still talking to it when it closed died in gloo with SIGABRT ("terminate
        # called without an active exception"), about one run in ten here.
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":   # torchrun --nproc-per-node N -m pipelines.train_launch SPEC [DEVICE]
    outcome = launch(sys.argv[1], device=sys.argv[2] if len(sys.argv) > 2 else None)
    if os.environ.get("RANK", "0") == "0":   # the other ranks' results lack the rows rank 0 kept
        print(outcome)
