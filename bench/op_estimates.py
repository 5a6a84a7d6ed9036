"""Calibration of the ops' memory estimates (issue 10, item 3): estimate against measured peak.

    python -m bench.op_estimates [--quick]

Each (op, domain, parameters, size) runs in a fresh process: the op is first run once on a tiny
sample of the same kind (imports, thread pools, allocator arenas), then the sample is made
(reader-shaped, bench/scale_samples.make_sample; earlier ops it depends on are run and cast to
storage dtypes, as in the pipeline), the kernel's peak-RSS mark is reset (/proc/self/clear_refs)
and the op runs. "measured" = peak RSS during the op − RSS before it (C allocations included);
"estimate" = Op.estimate_bytes on the same sample. The estimate must lie in [1, ~2] × measured.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

CASES = [   # (op, domain, params, sizes: nside / icosphere subdivision / nodes)
    ("eigenbasis", "sphere", {"k": 16}, [32, 64]),                   # block Lanczos
    ("eigenbasis", "sphere", {"k": 16}, [128, 256]),                 # LOBPCG (auto above 50k)
    ("eigenbasis", "sphere", {"k": 16, "basis": "spherical_harmonics"}, [128]),
    ("eigenbasis", "mesh", {"k": 64}, [4, 5, 6]),
    ("eigenbasis", "graph", {"k": 16}, [20_000, 100_000]),
    ("frames", "sphere", {}, [128]),
    ("frames", "mesh", {}, [5, 6]),
    ("neighborhoods", "sphere", {}, [64, 128]),
    ("neighborhoods", "mesh", {}, [5, 6]),
    ("geodesics", "mesh", {"sources": 4}, [5, 6]),
    ("geodesics", "sphere", {"sources": 4}, [128]),
]
QUICK = [("eigenbasis", "sphere", {"k": 16}, [16]), ("frames", "mesh", {}, [3]),
         ("neighborhoods", "sphere", {}, [16]), ("eigenbasis", "graph", {"k": 8}, [5_000])]
TINY = {"sphere": 4, "mesh": 2, "graph": 2_000}


def measure(op_name: str, domain: str, params: dict, size: int) -> dict:
    """Child process: the measured extra peak RSS of one op on one sample, and its estimate."""
    from bench.scale_samples import make_sample
    from gdl_data.ops import get_op
    from pipelines.compute import storage_dtypes

    op = get_op(op_name)
    parsed = op.parse_params(params, domain)
    for warm in (True, False):
        sample = make_sample(domain, TINY[domain] if warm else size)
        for dep in op.depends_on:
            sample.update(storage_dtypes(get_op(dep).run(sample, get_op(dep).parse_params({}, domain))))
        if warm:
            op.run(sample, parsed)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as marks:
        marks.write("5")                           # resets VmHWM (peak RSS) to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    out = op.run(sample, parsed)
    seconds = time.perf_counter() - start
    measured = _status("VmHWM") - before
    del out
    n = len(sample.get("pos", ())) or int(sample.get("num_nodes", 0))
    return {"op": op_name, "domain": domain, "params": params, "size": size, "n": n,
            "measured": measured, "estimate": op.estimate_bytes(sample, parsed), "s": seconds}


def _status(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*json.loads(args.measure))))
        return 0
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.1f}; 1 BLAS thread\n| op | domain | params | n | measured MiB | "
          f"estimate MiB | estimate / measured | s |\n|---|---|---|---|---|---|---|---|", flush=True)
    worst = []
    for op_name, domain, params, sizes in QUICK if args.quick else CASES:
        for size in sizes:
            row = _child([op_name, domain, params, size])
            ratio = row["estimate"] / max(row["measured"], 1)
            worst.append(ratio)
            print(f"| {op_name} | {domain} | {json.dumps(params)} | {row['n']:,} | "
                  f"{row['measured'] / 2**20:.0f} | {row['estimate'] / 2**20:.0f} | {ratio:.2f} | "
                  f"{row['s']:.1f} |", flush=True)
    print(f"# estimate / measured: min {min(worst):.2f}, max {max(worst):.2f}; load average "
          f"{os.getloadavg()[0]:.1f} at end")
    return 0 if min(worst) >= 1.0 else 1


def _child(case: list) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench.op_estimates", "--measure", json.dumps(case)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
