"""Issue 12, crash residue: a failed write leaves no temp files and the next run works; a
truncated manifest.json is recovered; a stale lock is taken over by exactly one process."""
import json
import os
import subprocess
import sys
import time
import warnings

import pytest
import trimesh

from gdl_data import open_dataset
from pipelines.execute import run_pipeline
from safety_helpers import REPO, gdl, mesh_spec, write_meshes
from storage import CorruptManifest, DatasetLock, DatasetLocked
from storage.fs import TEMP_NAME, write_bytes_atomic
from storage.fs import resolve


def _temp_files(folder):
    return [os.path.join(r, f) for r, _, files in os.walk(folder) for f in files if TEMP_NAME.match(f)]


def test_a_write_that_fails_for_lack_of_space_leaves_no_temp_file(tmp_path):
    """A real write failure (the file-size limit, as a full disk: EFBIG instead of ENOSPC) in a
    real process: the write raises, the old file is intact, no hidden .tmp file remains."""
    (tmp_path / "data.bin").write_bytes(b"old")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY)); "
            "from storage.fs import resolve, write_bytes_atomic; fs, root = resolve(sys.argv[1]); "
            "write_bytes_atomic(fs, root + '/data.bin', bytes(1 << 20))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    assert proc.returncode == 1 and "File too large" in proc.stderr, proc.stderr
    assert (tmp_path / "data.bin").read_bytes() == b"old" and _temp_files(tmp_path) == []


def test_a_run_that_hits_a_full_disk_keeps_its_version_and_the_next_run_works(tmp_path, dask_client):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(2):
        trimesh.creation.icosphere(subdivisions=4).apply_scale(1 + i).export(raw / f"m{i}.ply")
    out = tmp_path / "ds"
    spec = mesh_spec(raw, out)
    first = run_pipeline(spec, dask_client, progress=False)
    trimesh.creation.icosphere(subdivisions=4).apply_scale(5).export(raw / "m0.ply")   # one file edited
    # What a writer killed mid-write (SIGKILL, power loss) leaves: a hidden temp file.
    (out / "shards" / f".abc.parquet.{'0' * 32}.tmp").write_bytes(b"partial")
    # The second run, in its own process and Dask cluster, may write 64 kB per file: its shards fail.
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY)); "
            "from pipelines.execute import run_pipeline; from safety_helpers import mesh_spec; "
            "run_pipeline(mesh_spec(sys.argv[1], sys.argv[2]), progress=False)")
    proc = subprocess.run([sys.executable, "-c", code, str(raw), str(out)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO}/tests"})
    assert proc.returncode != 0 and "File too large" in proc.stderr, proc.stderr[-3000:]
    assert open_dataset(str(out)).version == 1 and len(open_dataset(str(out))) == 2   # version intact
    assert _temp_files(out) == []   # the failed writes' own, and the killed writer's (cleaned on taking the lock)
    assert not (out / "_lock.json").exists()
    (out / f".manifest.json.{'1' * 32}.tmp").write_bytes(b"partial")   # another kill's leftover
    again = run_pipeline(spec, dask_client, progress=False)   # no hand-cleaning needed
    assert again["version"] == first["version"] + 1 and again["sample_count"] == 2
    assert _temp_files(out) == []


def test_a_truncated_manifest_is_recovered_from_the_latest_intact_version(tmp_path, dask_client):
    raw = write_meshes(tmp_path / "raw", 2)
    out = tmp_path / "ds"
    run_pipeline(mesh_spec(raw, out), dask_client, progress=False)
    run_pipeline(mesh_spec(raw, out, ops={"eigenbasis": {"k": 3}}), dask_client, progress=False)
    text = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.warns(UserWarning, match=r"manifest.json is not valid JSON .* reading version 2 from .*000002.json"):
        ds = open_dataset(str(out))
    assert ds.version == 2 and ds[0]["evecs"].shape[1] == 3
    code, shown = gdl("inspect", str(out), "--json")
    assert code == 0 and json.JSONDecoder().raw_decode(shown[shown.index("{"):])[0]["version"] == 2
    with DatasetLock(str(out)):   # the next writer repairs it on taking the lock
        pass
    assert json.loads((out / "manifest.json").read_text()) == json.loads((out / "versions" / "000002.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_dataset(str(out)).version == 2


def test_a_dataset_with_no_intact_manifest_gets_a_message_naming_the_file_and_the_fix(tmp_path, dask_client):
    raw = write_meshes(tmp_path / "raw", 1)
    out = tmp_path / "ds"
    run_pipeline(mesh_spec(raw, out), dask_client, progress=False)
    for path in (out / "manifest.json", out / "versions" / "000001.json"):
        path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptManifest, match=r"manifest.json is not valid JSON.*re-run gdl preprocess"):
        open_dataset(str(out))
    code, text = gdl("inspect", str(out))
    assert code == 2 and f"{out}/manifest.json is not valid JSON" in text and "Traceback" not in text, text


def _race_for_the_lock(uri, start, hold, log):
    """One contender (a forked process): at `start`, try the lock once; if won, hold it `hold`
    seconds and log when it held it."""
    while time.time() < start:
        pass
    try:
        lock = DatasetLock(uri).acquire()
    except DatasetLocked:
        os._exit(0)
    entered = time.time()
    time.sleep(hold)
    left = time.time()
    lock.release()
    with open(log, "a") as fh:
        fh.write(json.dumps([entered, left, lock.recovered is not None]) + "\n")
    os._exit(0)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_is_taken_over_by_one_process_at_a_time(tmp_path):
    """6 real processes x 16 trials race for a lock whose holder is dead: never two holders
    (the lock before issue 12 gave two holders in 3 of 48 such trials, and crashed in others).
    Forked, so that all six are ready before the start signal (no import time in the race)."""
    import multiprocessing
    fork = multiprocessing.get_context("fork")
    out = tmp_path / "ds"
    out.mkdir()
    overlaps, winners = 0, []
    for trial in range(16):
        (out / "_lock.json").write_text(json.dumps({"pid": _dead_pid(), "host": os.uname().nodename,
                                                    "token": "dead", "since": "then"}))
        log = tmp_path / f"trial{trial}.log"
        start = time.time() + 0.5
        procs = [fork.Process(target=_race_for_the_lock, args=(str(out), start, 0.3, str(log))) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert all(p.exitcode == 0 for p in procs)
        held = sorted(json.loads(line) for line in log.read_text().splitlines())
        winners.append(len(held))
        overlaps += sum(b[0] < a[1] for a, b in zip(held, held[1:]))
        assert held, "nobody got the lock after its holder died"   # (the taker may lose the create to another)
        assert not (out / "_lock.json").exists()
    assert overlaps == 0, f"two holders at once in {overlaps} cases; holders per trial {winners}"


def test_a_lock_file_left_empty_by_a_writer_that_died_is_taken_over(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "_lock.json").write_bytes(b"")
    old = time.time() - 60
    os.utime(out / "_lock.json", (old, old))
    lock = DatasetLock(str(out)).acquire()
    assert lock.recovered is not None
    lock.release()


def test_write_bytes_atomic_still_replaces_whole_files(tmp_path):
    fs, root = resolve(str(tmp_path))
    write_bytes_atomic(fs, f"{root}/a.json", b"1")
    write_bytes_atomic(fs, f"{root}/a.json", b"2")
    assert (tmp_path / "a.json").read_bytes() == b"2" and _temp_files(tmp_path) == []


def test_the_takeover_race_step_by_step(tmp_path):
    """The interleaving that gave two holders: B reads the dead holder's lock, A takes it over
    and holds it, then B goes on to remove 'the stale lock'. B must re-read inside the guard
    and leave A's lock alone."""
    out = tmp_path / "ds"
    out.mkdir()
    (out / "_lock.json").write_text(json.dumps({"pid": _dead_pid(), "host": os.uname().nodename,
                                                "token": "dead", "since": "then"}))
    a, b = DatasetLock(str(out)), DatasetLock(str(out))
    seen_by_b = b.current_holder()
    assert b._is_stale(seen_by_b)            # B decided: stale
    a.acquire()                              # meanwhile A took it over
    assert a.recovered is not None
    assert b._take_over_if_stale() is False  # B's removal is refused
    assert json.loads((out / "_lock.json").read_text())["token"] == a.token
    with pytest.raises(DatasetLocked, match=f"process {os.getpid()}"):
        b.acquire()
    a.release()
