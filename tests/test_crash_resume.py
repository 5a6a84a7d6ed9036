"""Issue 4: a `gdl preprocess` killed with SIGKILL at several points leaves the previous version
intact, and the next run resumes, reusing finished shards, to the same bytes as a clean run."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import trimesh
import yaml

from gdl_data import open_dataset

pytestmark = pytest.mark.slow
GDL = [sys.executable, "-m", "flows.cli"]


def _content(uri):
    return [(s["sample_id"], {k: v.tobytes() for k, v in s.items() if isinstance(v, np.ndarray)})
            for s in open_dataset(uri)]


def _write_spec(tmp_path, raw, out, k):
    spec = {"name": "crash", "domain": "mesh", "source": str(raw), "output": str(out),
            "shard_size": 2, "ops": {"eigenbasis": {"k": k}, "frames": {}}}
    path = tmp_path / f"spec-{out.name}-{k}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run(spec, env, timeout=300):
    proc = subprocess.run(GDL + ["preprocess", str(spec)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _finished_shards(out):
    folder = out / "shards"
    return len([f for f in os.listdir(folder) if f.endswith(".files.parquet")]) if folder.exists() else 0


def _kill_when(spec, env, out, shards_on_disk):
    """Start a run in its own process group and SIGKILL the whole group once `shards_on_disk`
    shards are finished in the dataset folder (earlier versions' and killed runs' included)."""
    proc = subprocess.Popen(GDL + ["preprocess", str(spec)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "_lock.json").exists() and _finished_shards(out) >= shards_on_disk:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and the Dask workers / Prefect server it started
        proc.wait()


def test_killed_runs_keep_the_previous_version_and_resume_to_identical_bytes(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(16):                                        # 8 shards of 2 files per version
        mesh = trimesh.creation.icosphere(subdivisions=2)
        mesh.vertices *= 1 + 0.1 * np.random.default_rng(i).random((len(mesh.vertices), 1))
        mesh.export(raw / f"m{i}.ply")
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
    out = tmp_path / "ds"
    _run(_write_spec(tmp_path, raw, out, k=6), env)            # version 1
    v1 = _content(out)

    spec = _write_spec(tmp_path, raw, out, k=5)                # version 2 will change every shard
    v1_shards = _finished_shards(out)
    # Kill as soon as the run holds the lock, then after 2 and 4 of version 2's 8 shards (a
    # killed run's finished shards count: the next run resumes them and goes on).
    for new_shards in (0, 2, 4):
        _kill_when(spec, env, out, v1_shards + new_shards)
        assert open_dataset(str(out)).version == 1
        assert _content(out) == v1                              # the previous version, intact
    _run(spec, env)                                             # resumes: takes over the stale lock
    manifest = open_dataset(str(out)).manifest
    assert manifest["version"] == 2 and manifest["run"]["shards_resumed"] >= 4

    clean = tmp_path / "clean"
    _run(_write_spec(tmp_path, raw, clean, k=5), env)
    assert _content(out) == _content(clean)
