"""Issue 6: a real Prefect server process on loopback (SQLite, home in a temp folder); `gdl serve`
registers the deployments with their schedules; a run triggered through the API completes, and
the training spec chained after it runs too and leaves its checkpoint in storage."""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from servers import free_port, stop, wait_until

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def prefect_server(tmp_path):
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read(),
                   120, "Prefect server")
        yield env
    finally:
        stop(proc)
        log.close()


def _api(env, path, body, attempts=6):
    """POST to the server's API. A 503 is retried, as Prefect's own client does: the SQLite
    server answers it while another writer (here `gdl serve` registering its schedules) holds
    the database."""
    req = urllib.request.Request(env["PREFECT_API_URL"] + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)


def _wait_for_run(env, deployment_id, seconds, after=0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = _api(env, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}}})
        final = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
        if len(final) > after:
            return final
        time.sleep(2)
    raise AssertionError(f"no finished run of deployment {deployment_id} within {seconds} s")


def test_serve_registers_schedules_and_runs_preprocess_then_chained_training(tmp_path, prefect_server):
    from pipelines.demo_data import materialise_demo_data
    raw = materialise_demo_data(str(tmp_path / "raw"))
    pre = {"name": "karate-data", "domain": "graph", "source": os.path.join(raw["graph"], "karate_club.graphml"),
           "output": str(tmp_path / "datasets" / "karate"), "ops": {"eigenbasis": {"k": 8}},
           "schedule": {"interval_seconds": 3600}}
    train = {"name": "karate-train", "dataset": str(tmp_path / "datasets" / "karate"), "model": "gcn",
             "task": "node_classification", "target": "y", "features": [], "split": {"seed": 0, "test": 0.3},
             "hyper": {"lr": 0.01, "hidden": 16, "pe_dim": 4}, "epochs": 5, "seed": 0,
             "output": str(tmp_path / "runs"), "after": "karate-data", "schedule": {"cron": "0 3 * * *"}}
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(pre))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    env = prefect_server
    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", str(tmp_path / "pre.yaml"),
                              str(tmp_path / "train.yaml")], cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            deployments = {d["name"]: d for d in _api(env, "/deployments/filter", {})}
            if {"karate-data", "karate-train"} <= set(deployments):
                break
            time.sleep(1)
        assert {"karate-data", "karate-train"} <= set(deployments), open(tmp_path / "serve.log").read()[-3000:]
        pre_dep, train_dep = deployments["karate-data"], deployments["karate-train"]
        assert pre_dep["schedules"][0]["schedule"]["interval"] == 3600
        assert train_dep["schedules"][0]["schedule"]["cron"] == "0 3 * * *"

        _api(env, f"/deployments/{pre_dep['id']}/create_flow_run", {})
        runs = _wait_for_run(env, pre_dep["id"], 300)
        assert runs[0]["state_type"] == "COMPLETED", open(tmp_path / "serve.log").read()[-3000:]
        assert (tmp_path / "datasets" / "karate" / "manifest.json").exists()

        trained = _wait_for_run(env, train_dep["id"], 300)
        assert trained[0]["state_type"] == "COMPLETED", open(tmp_path / "serve.log").read()[-3000:]
        checkpoints = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "runs") for f in fs if f.endswith(".pt")]
        assert checkpoints, "the chained training run wrote no checkpoint"
    finally:
        stop(serve)
        log.close()
