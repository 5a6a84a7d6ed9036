"""The warm server (flows/warm.py): a command it runs behaves as one run in its own process.

Real processes throughout: `python -m flows.cli` clients, a server started by `gdl warm start`,
Dask clusters forked by its children. Every server is ended by its pid at the end. Sockets
live in a short temporary folder (GDL_WARM_DIR), Prefect's home in another.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.warm import ask
from gdl_data import open_dataset
from pipelines.demo_data import write_conformer_sdf
from processes import assert_sigterm_stops, live_members
from storage import list_versions

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env(base: Path, root: Path = REPO, **extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "GDL_WARM_DIR": str(base / "sock"),
           "PREFECT_HOME": str(base / "prefect"), **extra}
    for name in ("GDL_NO_WARM", "PREFECT_API_URL"):
        env.pop(name, None)
    return env


def _gdl(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=env["PYTHONPATH"].split(os.pathsep)[0])


def _servers(env: dict) -> list[dict]:
    return json.loads(_gdl(env, "warm", "status", "--json").stdout)


def _mine(env: dict) -> dict | None:
    return next((s for s in _servers(env) if s["this_code"]), None)


def _start(env: dict, *flags: str) -> dict:
    done = _gdl(env, "warm", "start", *flags)
    assert done.returncode == 0, done.stdout + done.stderr
    return _mine(env)


def _end(pid: int) -> None:
    """Whatever a test left: the server, by its pid."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _gone(pid: int, within: float) -> bool:
    """Ended within `within` seconds (a zombie is ended: the server's reaper is init, not us)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def base():
    path = Path(tempfile.mkdtemp(prefix="gdlw-"))     # short: a socket path has ~100 bytes at most
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(base):
    """One server for the tests below; the last of them stops it."""
    env = _env(base)
    info = _start(env, "--idle-minutes", "10")
    yield env, info
    _end(info["pid"])


def _spec(folder: Path, name: str, source: Path, ops: dict, **extra) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "domain": "molecule", "source": str(source),
                                    "output": str(folder / name), "ops": ops, **extra}))
    return path


def _dataset(uri: str) -> tuple:
    """Every sample's source, id and arrays; the manifest's shards and what its last run did."""
    rows = [(s["source"], s["sample_id"], {k: v.tobytes() for k, v in s.items() if isinstance(v, np.ndarray)})
            for s in open_dataset(uri)]
    manifest = json.loads((Path(uri) / "manifest.json").read_text())
    run = {k: v for k, v in manifest["run"].items() if k not in ("seconds_by_stage", "wall_seconds")}
    shards = [(s["name"], s["rows"], s["sha256"]) for s in manifest["shards"]]
    return rows, shards, manifest["columns"], manifest["sample_count"], run


def test_a_forwarded_preprocess_makes_the_same_dataset_as_one_in_its_own_process(server, tmp_path):
    env, _ = server
    sdf = tmp_path / "mols.sdf"
    write_conformer_sdf(str(sdf), 40, seed=5)      # > 32 items: the first run starts a cluster
    ops = {"neighborhoods": {"radius": 5.0}, "eigenbasis": {"k": 4}}
    here, warm = _spec(tmp_path, "here", sdf, ops), _spec(tmp_path, "warm", sdf, ops)
    served = _mine(env)["served"]
    for step in ("first run", "one record appended"):
        if step != "first run":
            records = sdf.read_bytes().split(b"$$$$\n")[:-1]
            sdf.write_bytes(b"".join(r + b"$$$$\n" for r in records + [records[3].replace(b"mol", b"new", 1)]))
        own = _gdl({**env, "GDL_NO_WARM": "1"}, "preprocess", str(here))
        forwarded = _gdl(env, "preprocess", str(warm))
        assert own.returncode == forwarded.returncode == 0, own.stderr[-2000:] + forwarded.stderr[-2000:]
        assert "samples written, 0 failed" in forwarded.stdout
        served += 1
        assert _mine(env)["served"] == served, step           # the server ran it, not the client
        assert _dataset(str(tmp_path / "here")) == _dataset(str(tmp_path / "warm")), step
    run = _dataset(str(tmp_path / "warm"))[4]
    assert run["items_computed"] == 1 and run["shards_computed_in"] == {"forked process": 1}


def test_the_same_interpreter_by_another_name_finds_the_server(server, tmp_path):
    """`gdl` runs the venv's python3.X (its first line), `python -m flows.cli` the venv's
    python: one interpreter and one set of packages, so one server serves both."""
    env, _ = server
    folder = os.path.dirname(sys.executable)
    names = {os.path.join(folder, n) for n in ("python", "python3", f"python3.{sys.version_info.minor}")}
    alias = next(p for p in sorted(names - {sys.executable})
                 if os.path.exists(p) and os.path.realpath(p) == os.path.realpath(sys.executable))
    sdf = tmp_path / "mols.sdf"
    write_conformer_sdf(str(sdf), 2, seed=1)
    spec = _spec(tmp_path, "alias", sdf, {"eigenbasis": {"k": 2}})
    served = _mine(env)["served"]
    done = subprocess.run([alias, "-m", "flows.cli", "validate", str(spec)], env=env, capture_output=True,
                          text=True, timeout=60, cwd=env["PYTHONPATH"].split(os.pathsep)[0])
    assert done.returncode == 0, done.stderr
    assert _mine(env)["served"] == served + 1


def test_output_and_exit_status_reach_the_client(server, tmp_path):
    env, _ = server
    sdf = tmp_path / "mols.sdf"
    write_conformer_sdf(str(sdf), 6, seed=1)
    sdf.write_bytes(sdf.read_bytes() + b"not a molecule\n$$$$\n")
    good = _spec(tmp_path, "good", sdf, {"eigenbasis": {"k": 2}})
    bad = _spec(tmp_path, "bad", sdf, {"eigenbasis": {"k": "many"}})
    served = _mine(env)["served"]
    valid = _gdl(env, "validate", str(good))
    assert valid.returncode == 0 and valid.stdout.strip() == "1 spec(s) valid"
    refused = _gdl(env, "preprocess", str(bad))
    assert refused.returncode == 2 and refused.stderr.startswith("gdl preprocess: error: ")
    assert "Traceback" not in refused.stderr and "eigenbasis" in refused.stderr
    failed = _gdl(env, "preprocess", str(good), "--fail-on-errors")
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert "6 samples written, 1 failed" in failed.stdout
    info = json.loads(_gdl(env, "inspect", str(tmp_path / "good"), "--json").stdout)
    assert [e["source"] for e in info["errors_by_cause"]["read: truncated"]["examples"]] == [f"{sdf}#6"]
    assert _mine(env)["served"] == served + 4


def test_a_forwarded_command_loads_no_module_beyond_the_client_and_c_modules(server, tmp_path):
    """The client (flows/warm_client.py) of a forwarded command imports what a bare interpreter
    has not loaded: itself and C modules only (socket, json, signal and what they import, enum,
    selectors, re, were 7-8 ms of a 40 ms `gdl validate`)."""
    env, _ = server
    sdf = tmp_path / "mols.sdf"
    write_conformer_sdf(str(sdf), 2, seed=1)
    spec = _spec(tmp_path, "mols", sdf, {"eigenbasis": {"k": 2}})
    client = ("import sys; before = set(sys.modules); from flows.warm_client import forward; "
              "code = forward(sys.argv[1:]); "
              "print(sorted(n for n in set(sys.modules) - before if getattr(sys.modules[n], '__file__', None) "
              "and not sys.modules[n].__file__.endswith('.so'))); sys.exit(code)")
    served = _mine(env)["served"]
    done = subprocess.run([sys.executable, "-c", client, "validate", str(spec)], env=env, capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and _mine(env)["served"] == served + 1, done.stderr
    assert done.stdout.splitlines() == ["1 spec(s) valid", "['__future__', 'flows', 'flows.warm_client']"]


def _maps_spec(folder: Path, count: int) -> Path:
    """A run of several seconds: `count` HEALPix maps, each its own shard, all computed."""
    raw = folder / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        np.save(raw / f"map{i:02d}.npy", rng.normal(size=12 * 64 * 64))
    spec = {"name": "maps", "domain": "sphere", "source": str(raw), "output": str(folder / "ds"),
            "shard_size": 1, "share_geometry": False,
            "ops": {"eigenbasis": {"k": 16}, "frames": {}, "neighborhoods": {}}}
    path = folder / "maps.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _running_child(env: dict, shards: Path, done: int, client: subprocess.Popen) -> int:
    """The server's child for `client`, once at least `done` shards are written."""
    deadline = time.monotonic() + 120
    while True:
        assert client.poll() is None and time.monotonic() < deadline, client.communicate()
        running = _mine(env)["running"]
        if running and (done == 0 or shards.exists() and len(list(shards.glob("*.files.parquet"))) >= done):
            return running[0]
        time.sleep(0.2)


def test_a_killed_or_stopped_client_stops_its_command_and_the_next_run_resumes(server, tmp_path):
    env, _ = server
    spec, shards = _maps_spec(tmp_path, 8), tmp_path / "ds" / "shards"
    args = [sys.executable, "-m", "flows.cli", "preprocess", str(spec), "--workers", "2"]
    killed = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    child = _running_child(env, shards, 1, killed)
    killed.kill()                                            # SIGKILL: the client cannot relay anything
    killed.wait()
    deadline = time.monotonic() + 10
    while (live_members(child) or child in _mine(env)["running"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_members(child) == [] and child not in _mine(env)["running"]      # with its workers
    assert not (tmp_path / "ds" / "_lock.json").exists() and list_versions(str(tmp_path / "ds")) == []

    stopped = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    child = _running_child(env, shards, len(list(shards.glob("*.files.parquet"))) + 1, stopped)
    assert_sigterm_stops(stopped, child, tmp_path / "ds")
    done = len(list(shards.glob("*.files.parquet")))
    resumed = _gdl(env, "preprocess", str(spec), "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    run = json.loads((tmp_path / "ds" / "manifest.json").read_text())["run"]
    assert run["shards_resumed"] == done >= 2 and run["shards_resumed"] + run["shards_computed"] == 8


def _spare(env: dict) -> int:
    """The child the server forked ahead of the next command (within a second of being idle)."""
    deadline = time.monotonic() + 10
    while not _mine(env)["spare"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return _mine(env)["spare"]


def test_stop_ends_the_server_and_removes_its_socket(server):
    env, info = server
    spare = _spare(env)
    assert Path(info["socket"]).exists()
    assert "stopping the server" in _gdl(env, "warm", "stop").stdout
    assert _gone(info["pid"], 15) and not Path(info["socket"]).exists() and _gone(spare, 5)
    assert _gdl(env, "warm", "status").returncode == 1


def test_a_server_of_other_code_is_not_used_and_an_edit_stops_it(base, tmp_path):
    copy = tmp_path / "checkout"
    for package in ("storage", "gdl_data", "pipelines", "flows"):
        shutil.copytree(REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    theirs, ours = _env(base, copy), _env(base)
    info = _start(theirs, "--idle-minutes", "10")
    try:
        sdf = tmp_path / "mols.sdf"
        write_conformer_sdf(str(sdf), 3, seed=2)
        spec = _spec(tmp_path, "mols", sdf, {"eigenbasis": {"k": 2}})
        assert _gdl(ours, "validate", str(spec)).returncode == 0        # this checkout: not theirs
        assert _gdl(theirs, "validate", str(spec)).returncode == 0      # the copy: its server
        assert _mine(theirs)["served"] == 1
        edited = copy / "flows" / "report.py"
        os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
        assert _gdl(theirs, "validate", str(spec)).returncode == 0      # edited: its own process
        old = ask(info["socket"], "status")
        assert old is None or old["served"] == 1                         # (if the old server still answers)
        assert _gone(info["pid"], 15)                                    # and the old server went
        assert not Path(info["socket"]).exists()
    finally:
        _end(info["pid"])


def test_idle_time_ends_the_server_and_removes_its_socket_and_log(tmp_path):
    env = _env(tmp_path)
    idle = _start(env, "--idle-minutes", "0.02")                      # 1.2 s
    try:
        # what a child killed while saving its copied pages (flows/warm_pages.py) leaves
        Path(idle["socket"][:-len(".sock")] + ".pages.4242.tmp").write_bytes(b"\0" * 8)
        assert Path(idle["socket"]).exists() and _gone(idle["pid"], 15)
        assert list((tmp_path / "sock").iterdir()) == []
    finally:
        _end(idle["pid"])


def test_a_command_leaves_its_copied_pages_and_a_spare_that_dies_stops_the_writing_ahead(tmp_path):
    """flows/warm_pages.py, as the server uses it: a command's child saves the server pages it
    copied (the next spare writes them ahead); a spare that ends by itself (as if the writing
    had crashed it) is replaced by one that writes nothing ahead."""
    env = _env(tmp_path)
    info = _start(env, "--idle-minutes", "5")
    try:
        sdf = tmp_path / "mols.sdf"
        write_conformer_sdf(str(sdf), 3, seed=2)
        done = _gdl(env, "preprocess", str(_spec(tmp_path, "mols", sdf, {"eigenbasis": {"k": 2}})))
        assert done.returncode == 0, done.stderr[-2000:]
        pages = Path(info["socket"][:-len(".sock")] + ".pages")
        deadline = time.monotonic() + 30
        while not pages.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        saved = np.fromfile(pages, dtype="<i8")
        assert 100 < len(saved) <= 16384 and (np.diff(saved) > 0).all()     # sorted page numbers
        spare = _mine(env)["spare"]
        assert _mine(env)["write_ahead"] and spare
        os.kill(spare, signal.SIGSEGV)
        assert _gone(spare, 15)
        deadline = time.monotonic() + 30
        while (_mine(env)["spare"] in (None, spare)) and time.monotonic() < deadline:
            time.sleep(0.1)
        now = _mine(env)
        assert now["spare"] not in (None, spare) and now["write_ahead"] is False
        assert _gdl(env, "preprocess", str(tmp_path / "mols.yaml")).returncode == 0   # still serves
    finally:
        _end(info["pid"])


def test_a_server_that_dies_mid_command_is_one_line_and_ends_the_command(tmp_path):
    env = _env(tmp_path)
    info = _start(env)
    spec = _maps_spec(tmp_path, 6)
    try:
        spare = _spare(env)
        client = subprocess.Popen([sys.executable, "-m", "flows.cli", "preprocess", str(spec)], env=env,
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Once it computes: a SIGTERM while its LocalCluster starts makes Dask print tracebacks
        # (its atexit close, a nanny, a worker), with or without a server, in 2-5 runs of 10 here.
        child = _running_child(env, tmp_path / "ds" / "shards", 1, client)
        os.kill(info["pid"], signal.SIGKILL)
        out, err = client.communicate(timeout=30)
        assert client.returncode == 1 and "the warm server ended while running this command" in err
        assert "Traceback" not in err and child == spare           # the spare child ran it
        deadline = time.monotonic() + 10
        while live_members(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live_members(child) == []
    finally:
        _end(info["pid"])


def _fork(then) -> int:
    """A child of this test process that runs `then()` and leaves with os._exit."""
    pid = os.fork()
    if pid == 0:
        try:
            then()
        finally:
            os._exit(0)
    return pid


def test_a_child_hands_back_its_exit_status_and_the_clients_stdio_before_it_exits(tmp_path):
    """flows/warm_child.py: the command's status comes down the server's socket, and the
    client's stdout (a pipe here) reaches its end, while the child still lives (stopped here
    by itself right after: the status cannot have come from its exit)."""
    import socket as sockets

    from flows import warm_child
    sdf = tmp_path / "mols.sdf"
    write_conformer_sdf(str(sdf), 2, seed=3)
    spec = _spec(tmp_path, "mols", sdf, {"eigenbasis": {"k": 2}})
    ours, theirs = sockets.socketpair()
    out_r, out_w = os.pipe()
    fds = [os.open(os.devnull, os.O_RDONLY), out_w, os.dup(2)]
    request = {"argv": ["validate", str(spec)], "argv0": "gdl", "cwd": str(tmp_path), "env": dict(os.environ),
               "path": sys.path, "umask": 0o022}
    real_exit = os._exit

    def run():
        os._exit = lambda code: (os.kill(os.getpid(), signal.SIGSTOP), real_exit(code))
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__       # not pytest's capture
        warm_child._run_command(request, fds, set(), theirs, then=lambda: None)
    pid = _fork(run)
    for fd in fds:
        os.close(fd)
    theirs.close()
    try:
        ours.settimeout(60)
        assert ours.recv(64) == b"x0\n"
        with os.fdopen(out_r) as out:
            assert out.read() == "1 spec(s) valid\n"           # end of file: the child let go of it
        _, status = os.waitpid(pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)                           # it had not exited yet
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_the_server_tells_the_client_a_childs_exit_status_before_the_child_ends(tmp_path):
    """flows/warm_server.py: the status a child sends reaches the client at once, not when the
    child is reaped (a stand-in child here, which then lingers as a slow teardown would)."""
    import socket as sockets

    from flows import warm_client as link
    from flows.warm_server import Server, Spare, listen
    path = str(tmp_path / "s.sock")
    server = Server(listen(path), path, "fp", 1.0, 0.0)
    ours, theirs = sockets.socketpair()

    def stand_in():
        ours.close()
        link.recv_message(theirs, max_fds=3)
        theirs.sendall(b"x5\n")
        time.sleep(60)
    pid = _fork(stand_in)
    theirs.close()
    server.spare = Spare(pid, ours)
    client, conn = sockets.socketpair()
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        server.start_run(conn, {"op": "run", "argv": ["validate", "x.yaml"]}, [null, null, null])
        os.close(null)
        client.settimeout(30)
        assert link.recv_message(client)[0] == {"pid": pid}
        deadline = time.monotonic() + 30
        while server.runs[pid].conn is not None and time.monotonic() < deadline:
            for key, _ in server.sel.select(timeout=1.0):
                key.data()
        assert link.recv_message(client)[0] == {"exit": 5}
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)            # still running
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        server.listener.close()


def test_the_servers_preload_leaves_a_command_nothing_to_import_or_build(tmp_path):
    """What a forwarded preprocess (first run and re-run), validate and inspect import or build
    after the server's preload (flows/warm_server.py): nothing. Each module found missing cost
    every command its compile or load (3-5 ms each here), the parser 5-8 ms."""
    sdf = tmp_path / "mols.sdf"
    write_conformer_sdf(str(sdf), 4, seed=3)
    spec = _spec(tmp_path, "mols", sdf, {"neighborhoods": {"radius": 5.0}, "eigenbasis": {"k": 2}})
    read, write = os.pipe()

    def child():
        from flows import cli, warm_server
        warm_server.preload()
        loaded, built = set(sys.modules), cli._PARSER
        codes = [cli.main(["preprocess", str(spec)]), cli.main(["validate", str(spec)])]
        _write_records(sdf, 5)
        codes += [cli.main(["preprocess", str(spec)]), cli.main(["inspect", str(tmp_path / "mols")])]
        report = {"new": sorted(set(sys.modules) - loaded), "same_parser": built is not None and cli._PARSER is built,
                  "codes": codes}
        os.write(write, json.dumps(report).encode())
    pid = _fork(child)
    os.close(write)
    with os.fdopen(read) as fh:
        report = json.loads(fh.read() or "{}")
    os.waitpid(pid, 0)
    assert report == {"new": [], "same_parser": True, "codes": [0, 0, 0, 0]}


def _write_records(sdf: Path, count: int) -> None:
    write_conformer_sdf(str(sdf), count, seed=3)


@pytest.fixture(scope="module")
def test_ops_server(base):
    """A server that has imported tests/crash_ops.py as well (its test ops registered), as
    `gdl warm start` starts one; its log in base/test-ops.log."""
    env = _env(base, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    code = ("import os, sys, crash_ops; from flows.warm import main; code = main(sys.argv[1:]); "
            "sys.stdout.flush(); os._exit(code)")
    with open(base / "test-ops.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, "--idle-minutes", "10"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while _mine(env) is None:
        assert proc.poll() is None and time.monotonic() < deadline, (base / "test-ops.log").read_text()
        time.sleep(0.2)
    yield env, _mine(env), base / "test-ops.log"
    _end(proc.pid)
    proc.wait()


def test_a_small_run_is_computed_in_the_warm_child_itself(test_ops_server, tmp_path):
    """pipelines/small_runs.py `compute_here`: the process that computed the samples is the
    server's child (its parent is the server), not a fork of that child."""
    env, info, _ = test_ops_server
    sdf = tmp_path / "mols.sdf"
    write_conformer_sdf(str(sdf), 3, seed=4)
    spec = _spec(tmp_path, "where", sdf, {"test_where": {}})
    done = _gdl(env, "preprocess", str(spec))
    assert done.returncode == 0 and "3 samples written, 0 failed" in done.stdout, done.stderr[-2000:]
    rows = [(int(s["pid"]), int(s["ppid"])) for s in open_dataset(str(tmp_path / "where"))]
    assert len(set(rows)) == 1 and rows[0][1] == info["pid"]
    assert _dataset(str(tmp_path / "where"))[4]["shards_computed_in"] == {"forked process": 1}


def test_a_sample_that_kills_the_warm_child_is_an_error_row_and_the_run_completes(test_ops_server, tmp_path):
    """The child dies inside its own computation (tests/crash_ops.py: os._exit, as a native
    crash or the OOM killer): the server runs the command again with the computation forked,
    whose death sends the shard to a cluster, whose isolated retry makes the one error row;
    the client sees one completed run."""
    env, _, log = test_ops_server
    path = tmp_path / "mols.sdf"
    write_conformer_sdf(str(path), 10, seed=4)
    records = path.read_bytes().split(b"$$$$\n")[:-1]
    records[3] = records[3].replace(b"M  END\n", b"M  END\n>  <crash>\n1\n\n", 1)
    path.write_bytes(b"".join(r + b"$$$$\n" for r in records))
    spec = _spec(tmp_path, "crash", path, {"test_crash": {}}, workers=1)
    served = _mine(env)["served"]
    done = _gdl(env, "preprocess", str(spec))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "9 samples written, 1 failed" in done.stdout and "Traceback" not in done.stderr
    assert _mine(env)["served"] == served + 1                      # the server ran it
    errors = open_dataset(str(tmp_path / "crash")).errors.to_pylist()
    assert [(e["source"], e["error"]) for e in errors] == [(f"{path}#3", "worker-died")]
    assert "died computing in its own process" in log.read_text()


def test_a_server_that_closes_the_connection_without_answering_is_not_run_around(tmp_path):
    """flows/warm_client.py: a server that took the request and closed the connection without
    an answer may have started the command; the client says so (exit 1) instead of running it
    a second time in its own process (a refusal, which says why, still runs it there)."""
    import socket as sockets

    from flows import warm_client as link
    env = _env(tmp_path)
    Path(env["GDL_WARM_DIR"]).mkdir(mode=0o700)
    probe = ("import os, sys; from flows import warm_client as link; print(link.this_socket())")
    path = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          cwd=REPO, check=True).stdout.strip()
    sdf = tmp_path / "mols.sdf"
    write_conformer_sdf(str(sdf), 2, seed=1)
    spec = _spec(tmp_path, "mols", sdf, {"eigenbasis": {"k": 2}})
    with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(4)
        for answer, expected in (({"refused": "the server is stopping"}, 0), (None, 1)):
            client = subprocess.Popen([sys.executable, "-m", "flows.cli", "validate", str(spec)], env=env, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            conn, _ = listener.accept()
            request, fds = link.recv_message(conn, max_fds=3)
            for fd in fds:
                os.close(fd)
            assert request["argv"] == ["validate", str(spec)]
            if answer:
                link.send_message(conn, answer)
            conn.close()
            out, err = client.communicate(timeout=60)
            assert client.returncode == expected, (answer, out, err)
            assert ("1 spec(s) valid" in out) == (expected == 0)       # run in its own process, or not at all
            assert expected == 0 or "did not answer (it closed the connection)" in err
