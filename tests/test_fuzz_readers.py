"""Issue 12: random byte mutations of real files of every supported format. Each gives a row or
an error row naming the file: never a hang, a crash, an exception out of a reader, or a lost
good sample (the unmutated files read in the same pipeline run are all there).

Every case is read in a supervised child process (tests/fuzz_cases.py), so a segfault or a hang
is recorded against its case instead of taking the test down; then each domain's cases and
originals go through one real pipeline run on Dask. The summary (counts, slowest case) prints
with `pytest -s`.
"""
import collections
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from fuzz_cases import make_cases, write_seeds
from gdl_data.errors import ReadError
from gdl_data.readers import iter_samples, supported_extensions
from pipelines.execute import run_pipeline
from safety_helpers import REPO, mesh_spec
from storage import read_shard_files

pytestmark = pytest.mark.slow
PER_SEED = 10
CASE_SECONDS = 60   # a case still running after this is a hang


def _supervise(cases_json, log, count):
    """Run fuzz_cases.py over all cases, restarting after a crash or hang; {case: result}."""
    results, start = {}, 0
    runner = os.path.join(REPO, "tests", "fuzz_cases.py")
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO}/tests"}
    while start < count:
        proc = subprocess.Popen([sys.executable, runner, cases_json, log, str(start)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        last_change, seen = time.monotonic(), -1
        while proc.poll() is None:
            size = os.path.getsize(log) if os.path.exists(log) else 0
            if size != seen:
                last_change, seen = time.monotonic(), size
            elif time.monotonic() - last_change > CASE_SECONDS:
                proc.kill()
            time.sleep(0.2)
        started = None
        with open(log) as fh:
            for line in fh:
                record = json.loads(line)
                if "start" in record:
                    started = record["start"]
                else:
                    results[record["case"]] = record
        if started is None or started in results and len(results) >= count:
            break
        if started not in results:   # died or hung inside this case
            outcome = "hang" if proc.returncode == -9 else "crash"
            results[started] = {"case": started, "outcome": outcome, "seconds": CASE_SECONDS,
                                "error": proc.stderr.read().decode()[-500:]}
        start = started + 1
    return results


def test_mutated_real_files_of_every_format_give_a_row_or_an_error_row(tmp_path, dask_client):
    seeds = write_seeds(str(tmp_path / "seeds"))
    covered = {os.path.splitext(p.removesuffix(".gz"))[1] + (".gz" if p.endswith(".gz") else "")
               for paths in seeds.values() for p in paths}
    for domain in seeds:
        # aliases, and the signals layout (a table beside a domain file: tests/test_shared_geometry.py)
        signals = {e for e in supported_extensions(domain) if e.startswith(".signals.")}
        assert set(supported_extensions(domain)) - covered - signals <= {".sd", ".ent", ".fit"}, domain
    cases = make_cases(seeds, str(tmp_path / "cases"), PER_SEED)
    assert len(cases) >= 200
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    results = _supervise(str(tmp_path / "cases.json"), str(tmp_path / "log.jsonl"), len(cases))

    counts = collections.Counter(r["outcome"] for r in results.values())
    slowest = max(results.values(), key=lambda r: r["seconds"])
    kinds = collections.Counter(k for r in results.values() for k in r.get("kinds", []))
    print(f"\nfuzz: {len(cases)} cases ({PER_SEED} per seed file, {len(cases) // PER_SEED} seed files): "
          f"{dict(counts)}; slowest {slowest['seconds']:.2f} s: {cases[slowest['case']]}; error kinds {dict(kinds)}")
    bad = {i: (cases[i], r) for i, r in results.items() if r["outcome"] not in ("samples", "errors")}
    assert not bad, bad
    assert len(results) == len(cases)
    assert all(r["named"] for r in results.values())

    lost = _through_the_pipeline(tmp_path, seeds, cases, dask_client)
    assert not lost, lost


def _through_the_pipeline(tmp_path, seeds, cases, dask_client):
    """Each domain's cases plus its unmutated originals in one run: every original's samples must
    be there, and every case must have rows or error rows. Returns what went missing."""
    lost = []
    for domain, paths in seeds.items():
        folder = tmp_path / "cases" / domain
        expected = {}
        for path in paths:
            name = "orig_" + os.path.basename(path)
            shutil.copy(path, folder / name)
            items = list(iter_samples(path, domain))
            assert not [i for i in items if isinstance(i, ReadError)], path   # originals are good
            expected[name] = len(items)
        for sibling in os.listdir(tmp_path / "seeds"):   # glTF buffers, the node table
            if sibling.endswith(".bin"):
                shutil.copy(tmp_path / "seeds" / sibling, folder / sibling)
        if domain == "graph":
            shutil.copy(tmp_path / "seeds" / "florentine.nodes.csv", folder / "orig_florentine.nodes.csv")
        ops = {"eigenbasis": {"k": 4}}
        uri = str(tmp_path / f"ds-{domain}")
        manifest = run_pipeline(mesh_spec(folder, uri, name=f"fuzz-{domain}", domain=domain, ops=ops, shard_size=16),
                                dask_client, progress=False)
        per_file = {}       # an SDF or XYZ file has one index row per record: add them up
        for s in manifest["shards"]:
            for f in read_shard_files(uri, s["name"]):
                row = per_file.setdefault(os.path.basename(f["file"]), {"samples": 0, "errors": []})
                row["samples"] += f["samples"]
                row["errors"] += f["errors"]
        for name, count in expected.items():
            if per_file.get(name, {}).get("samples") != count or per_file[name]["errors"]:
                lost.append((domain, name, per_file.get(name)))
        for case in cases:
            if case["domain"] == domain:
                row = per_file.get(os.path.basename(case["path"]))
                if row is None or row["samples"] + len(row["errors"]) == 0:
                    lost.append((domain, case, row))
    return lost
