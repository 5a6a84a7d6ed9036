"""Issue 10 benchmark: one SDF of many molecules, `gdl preprocess` against the plain script.

    python -m bench.scale [--molecules 6000] [--repeats 3] [--workers 1 2]

Data: one SDF file of N small 3D molecules (QM9's shape; pipelines/demo_data.py
`write_conformer_sdf`). Work: `neighborhoods: {radius: 5.0}` and `eigenbasis: {k: 8}`.
Baseline, in the same run: bench/scale_plain.py, the single-process loop a user would write
(RDKit, cKDTree, numpy eigh, np.savez). gdl runs as users run it, the `gdl` console script
(`python -m flows.cli` where none is installed). Both are timed as whole commands (interpreter start,
imports, cluster start included), each a fresh process writing a fresh output, medians of
`--repeats`. Then the re-run costs, against gdl's own first run: one record appended, one
record in the middle edited, one removed (op computations counted from the manifest), each
command in its own process, then the same through a warm server the benchmark starts and stops
(`gdl warm start`, flows/warm.py), against the cold first run and against its own first run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SPEC = """name: molecules
domain: molecule
source: {source}
output: {output}
ops:
  neighborhoods: {{radius: 5.0}}
  eigenbasis: {{k: 8}}
"""


CPU: dict[str, list[float]] = {}      # CPU seconds (the command and its children) per label


def _timed(cmd: list[str], env: dict | None = None, label: str | None = None) -> float:
    """Wall seconds of a whole command; its CPU seconds (with its workers') kept in CPU[label].

    Written data is flushed first, untimed: the plain script leaves 6,000 new files whose
    writeback, started by the next command's fsync or file creation, cost that command up to
    2.5 s of kernel time (the next plain run took 5.4-6.2 s instead of 3.0)."""
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if label is not None:
        CPU.setdefault(label, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall


def _env(workdir: str, warm: bool = False) -> dict:
    """The benchmark's environment: its own Prefect home and warm-server folder; without `warm`,
    every command runs in its own process even if a server is up."""
    home = os.path.join(workdir, "prefect-home")
    os.makedirs(home, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "GDL_WARM_DIR": os.path.join(workdir, "warm")}
    env.pop("PREFECT_API_URL", None)
    env.pop("GDL_NO_WARM", None)
    return env if warm else {**env, "GDL_NO_WARM": "1"}


def _gdl_command() -> list[str]:
    """The `gdl` program a user runs (the console script beside this interpreter), else the
    same through `python -m flows.cli` (≈ 5 ms more: runpy)."""
    script = os.path.join(os.path.dirname(sys.executable), "gdl")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "flows.cli"]


def _gdl(workdir: str, sdf: str, output: str, *flags: str, label: str | None = None, warm: bool = False) -> float:
    spec = os.path.join(workdir, f"spec-{os.path.basename(output)}.yaml")
    with open(spec, "w") as fh:
        fh.write(SPEC.format(source=sdf, output=output))
    return _timed([*_gdl_command(), "preprocess", spec, *flags], _env(workdir, warm), label)


_RUNS = iter(range(1 << 30))


def _fresh(path: str) -> str:
    """A new output folder for each run. Nothing is deleted while timing: this machine's disk is
    mounted with `discard`, and removing the previous run's 6,000 files slowed the next run's
    file creation by up to 10x (an open() took 0.43 ms instead of 0.04), a cost that fell on the
    plain script's one-file-per-molecule output and hardly on gdl's 48 files."""
    return f"{path}-{next(_RUNS)}"


def first_runs(workdir: str, sdf: str, repeats: int, workers: list[int]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"plain script": []}
    out = os.path.join(workdir, "out")
    for _ in range(repeats):       # interleaved, so that load drifts hit every row alike
        times["plain script"].append(_timed([sys.executable, "-m", "bench.scale_plain", sdf, _fresh(out)],
                                            label="plain script"))
        for w in workers:
            label = f"gdl preprocess, {w} worker(s)"
            times.setdefault(label, []).append(_gdl(workdir, sdf, _fresh(out), "--workers", str(w), label=label))
    label = "gdl preprocess --prefect (temporary server)"
    times[label] = [_gdl(workdir, sdf, _fresh(out), "--prefect", label=label)]
    return times


def _records(sdf: str) -> list[bytes]:
    with open(sdf, "rb") as fh:
        return fh.read().split(b"$$$$\n")[:-1]


def _write_records(sdf: str, records: list[bytes]) -> None:
    with open(sdf, "wb") as fh:
        fh.write(b"".join(r + b"$$$$\n" for r in records))


def rerun_costs(workdir: str, sdf: str, repeats: int, warm: bool = False) -> dict[str, dict]:
    """gdl's first run, then one append, one edit in the middle, one removal: seconds (each step
    `repeats` times, each time on its own copy of the file and its own output) and the op
    computations the last of them made. `warm`: every command handed to a warm server."""
    out: dict[str, dict] = {}
    for _ in range(repeats):
        own = _fresh(os.path.join(workdir, "edits")) + ".sdf"
        shutil.copyfile(sdf, own)
        output = _fresh(os.path.join(workdir, "edits-out"))
        records = _records(own)
        middle, extra = len(records) // 2, records[1].replace(b"mol", b"new", 1)
        edited = records[middle].replace(b"mol", b"MOL", 1)        # the title line: new bytes, same molecule
        steps = {"first run": lambda: None,
                 "one record appended": lambda: _write_records(own, records + [extra]),
                 "one record edited (middle)": lambda: _write_records(own, records[:middle] + [edited] +
                                                                      records[middle + 1:] + [extra]),
                 "one record removed (middle)": lambda: _write_records(own, records[:middle] +
                                                                       records[middle + 1:] + [extra])}
        for label, change in steps.items():
            change()
            seconds = _gdl(workdir, own, output, warm=warm)
            with open(os.path.join(output, "manifest.json")) as fh:
                run = json.load(fh)["run"]
            row = out.setdefault(label, {"runs": []})
            row["runs"].append(seconds)
            row.update(computed=run["op_samples_computed"], where=run.get("shards_computed_in", {}))
    for row in out.values():
        row["seconds"] = statistics.median(row["runs"])
    return out


def warm_server(workdir: str, action: str) -> None:
    """`gdl warm start|stop` for the benchmark's own folder (flows/warm.py)."""
    subprocess.run([*_gdl_command(), "warm", action], check=True, env=_env(workdir, warm=True),
                   stdout=subprocess.DEVNULL)


def _print_reruns(costs: dict, warm_costs: dict | None) -> None:
    first = costs["first run"]["seconds"]
    print(f"\n{'re-run after (own process)':32s} {'median s':>8s} {'vs first run':>13s}  runs; op samples computed, shards computed in")
    for label, c in costs.items():
        print(f"{label:32s} {c['seconds']:8.2f} {c['seconds'] / first:13.3f}  "
              f"{[round(r, 2) for r in c['runs']]}; {c['computed']} {c['where']}")
    if not warm_costs:
        return
    warm_first = warm_costs["first run"]["seconds"]
    print(f"\n{'through a warm server':32s} {'median s':>8s} {'vs cold first':>13s} {'vs warm first':>14s}  runs; computed in")
    for label, c in warm_costs.items():
        print(f"{label:32s} {c['seconds']:8.2f} {c['seconds'] / first:13.3f} {c['seconds'] / warm_first:14.3f}  "
              f"{[round(r, 2) for r in c['runs']]}; {c['where']}")


def file_creation_seconds(workdir: str, count: int = 2000) -> float:
    """Seconds to create `count` small files: ≈ 0.05 s here, up to 10x that for a minute or two
    after a large delete on this discard-mounted disk (the test suite's, or this benchmark's own
    clean-up of a previous run), which the plain script's one file per molecule then pays."""
    folder = os.path.join(workdir, "probe")
    os.makedirs(folder)
    start = time.perf_counter()
    for i in range(count):
        with open(os.path.join(folder, f"{i}.npz"), "wb") as fh:
            fh.write(b"\0" * 600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-warm", action="store_true", help="skip the rows through a warm server")
    args = parser.parse_args()
    from pipelines.demo_data import write_conformer_sdf
    with tempfile.TemporaryDirectory(prefix="gdl-bench-scale-") as workdir:
        sdf = os.path.join(workdir, "molecules.sdf")
        write_conformer_sdf(sdf, args.molecules, seed=0)
        load, creates = os.getloadavg()[0], file_creation_seconds(workdir)
        times = first_runs(workdir, sdf, args.repeats, args.workers)
        costs = rerun_costs(workdir, sdf, args.repeats)
        warm_costs = None
        if not args.no_warm:
            warm_server(workdir, "start")
            try:
                warm_costs = rerun_costs(workdir, sdf, args.repeats, warm=True)
            finally:
                warm_server(workdir, "stop")
    plain = statistics.median(times["plain script"])
    print(f"\n{args.molecules} molecules in one SDF; ops radius 5.0 + eigenbasis k 8; {os.cpu_count()} cores; "
          f"load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end; medians of {args.repeats}; "
          f"2,000 file creations took {creates:.2f} s at start"
          + (" (slow: a large delete in the last minutes; the plain script's 6,000 files will pay for it)"
             if creates > 0.2 else ""))
    # The plain script's 6,000 files make it the row a slow disk state hurts most (some runs here
    # took 4.6-4.8 s against 3.1-3.4 s minutes apart): the last column divides its fastest run.
    fastest = min(times["plain script"])
    print(f"{'command (whole process)':48s} {'median s':>9s} {'runs':>22s} {'speed vs plain':>15s} {'CPU s':>6s} "
          f"{'vs plain fastest':>17s}")
    for label, runs in times.items():
        med = statistics.median(runs)
        print(f"{label:48s} {med:9.2f} {str([round(r, 2) for r in runs]):>22s} {plain / med:14.2f}x "
              f"{statistics.median(CPU[label]):6.2f} {fastest / med:16.2f}x")
    _print_reruns(costs, warm_costs)


if __name__ == "__main__":
    main()
