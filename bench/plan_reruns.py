"""Planning a re-run of one 6,000-molecule SDF after each kind of change (issue 10).

    python -m bench.plan_reruns [--molecules 6000] [--repeats 21]

One first run (`gdl preprocess`, its own process), then for each change the median time of `plan_run` (and of
`current_items`, the reading, splitting and hashing part) against that version, in a process
that has run the same code before (as a warm server's child has): the file rewritten with the
same bytes (new mtime), one record appended, one edited in the middle (same length, longer).
The planner reads the version's items index and splits and hashes the file only between its
unchanged ends (storage/items_index.py, pipelines/record_blocks.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from bench.scale import SPEC, _env, _gdl_command, _records, _write_records


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    from pipelines import cache
    from pipelines.demo_data import write_conformer_sdf
    from pipelines.spec import load_spec
    with tempfile.TemporaryDirectory(prefix="gdl-plan-") as folder:
        sdf, spec_path = os.path.join(folder, "mols.sdf"), os.path.join(folder, "spec.yaml")
        write_conformer_sdf(sdf, args.molecules)
        with open(spec_path, "w") as fh:
            fh.write(SPEC.format(source=sdf, output=os.path.join(folder, "out")))
        spec = load_spec(spec_path)
        subprocess.run([*_gdl_command(), "preprocess", spec_path], check=True, env=_env(folder),
                       stdout=subprocess.DEVNULL)
        records, middle = _records(sdf), args.molecules // 2
        changes = {"same bytes, new mtime": records,
                   "one record appended": records + [records[1].replace(b"mol", b"new", 1)],
                   "one record edited, same length": records[:middle] + [records[middle].replace(b"mol", b"MOL", 1)]
                   + records[middle + 1:],
                   "one record edited, longer": records[:middle] + [records[middle].replace(b"mol", b"MOLX", 1)]
                   + records[middle + 1:]}
        print(f"{'file after':32s} {'plan_run ms':>12s} {'current_items ms':>17s}  (medians of {args.repeats})")
        for label, new in changes.items():
            _write_records(sdf, new)
            states = cache.stat_files([spec.source], spec.domain)
            _, prev = cache.previous_items(spec.output)
            plan = _median_ms(lambda: cache.plan_run(spec, states), args.repeats)
            items = _median_ms(lambda: cache.current_items(states, prev, spec.domain), args.repeats)
            print(f"{label:32s} {plan:12.1f} {items:17.1f}")


if __name__ == "__main__":
    main()
