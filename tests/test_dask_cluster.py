"""Issue 6: a real Dask scheduler and two worker processes on loopback, driven by
`gdl preprocess --dask-address`, give the same dataset as the default temporary LocalCluster."""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from gdl_data import open_dataset
from servers import free_port, stop, wait_until

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def dask_processes():
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                       "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
                                      env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        from distributed import Client

        def two_workers():
            with Client(address, timeout=5) as client:
                client.wait_for_workers(2, timeout=30)
        wait_until(two_workers, 60, "Dask scheduler and workers")
        yield address
    finally:
        for p in reversed(procs):
            stop(p)


def _content(uri):
    return [(s["sample_id"], {k: v.tobytes() for k, v in s.items() if isinstance(v, np.ndarray)})
            for s in open_dataset(uri)]


def test_existing_cluster_gives_the_same_dataset_as_the_local_default(tmp_path, dask_processes):
    from pipelines.demo_data import materialise_demo_data
    folders = materialise_demo_data(str(tmp_path / "raw"))
    outputs = {}
    for name, address in (("remote", dask_processes), ("local", None)):
        spec = {"name": name, "domain": "graph", "source": folders["graph"], "output": str(tmp_path / name),
                "ops": {"eigenbasis": {"k": 4}, "geodesics": {"sources": 2}}}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        cmd = [sys.executable, "-m", "flows.cli", "preprocess", str(path)]
        if address:
            cmd += ["--dask-address", address]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs[name] = _content(str(tmp_path / name))
    assert len(outputs["remote"]) >= 3
    assert outputs["remote"] == outputs["local"]
