"""pipelines/small_runs.py: a few items computed in one forked child, whose results are used as
soon as they are read, and which is reaped before the process ends.

Real forks throughout. A child is held in its exit (`os._exit` patched to stop the process
first, which the fork inherits) to stand for the teardown of a large process: the run must not
wait for it, and must still reap it.
"""
import os
import signal
import subprocess
import sys

import pytest

from crash_ops import CRASH  # noqa: F401 - registers the test_crash op
from pipelines import small_runs
from pipelines.demo_data import write_conformer_sdf
from pipelines.execute import prepare
from pipelines.spec import parse_spec


def _job(tmp_path, count=3, ops=None):
    sdf = tmp_path / "mols.sdf"
    write_conformer_sdf(str(sdf), count, seed=7)
    spec = parse_spec({"name": "mols", "domain": "molecule", "source": str(sdf), "output": str(tmp_path / "ds"),
                       "ops": ops or {"eigenbasis": {"k": 2}}})
    return prepare(spec)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def exits_stopped(monkeypatch):
    """os._exit stops the calling process before it exits; the forked child inherits this."""
    real = os._exit
    monkeypatch.setattr(os, "_exit", lambda code: (os.kill(os.getpid(), signal.SIGSTOP), real(code)))

    def waited_too_long(*_):
        raise TimeoutError("the run waited for its stopped child to exit")
    previous = signal.signal(signal.SIGALRM, waited_too_long)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_results_are_used_before_the_child_has_exited_and_it_is_reaped_later(tmp_path, exits_stopped):
    job = _job(tmp_path)
    results = small_runs.run_in_child(job)
    assert [r.place for r in results] == ["forked process"] and results[0].computed == {"eigenbasis": 3}
    [pid] = small_runs._EXITING
    assert _state(pid) == "T"                      # still in its exit: not waited for
    os.kill(pid, signal.SIGCONT)
    small_runs.reap_children()
    assert small_runs._EXITING == []
    with pytest.raises(ChildProcessError):         # reaped: no zombie left
        os.waitpid(pid, os.WNOHANG)


def test_a_child_that_dies_is_waited_for_and_gives_none(tmp_path):
    path = tmp_path / "mols.sdf"
    job = _job(tmp_path, ops={"test_crash": {}})
    records = path.read_bytes().split(b"$$$$\n")[:-1]
    records[1] = records[1].replace(b"M  END\n", b"M  END\n>  <crash>\n1\n\n", 1)
    path.write_bytes(b"".join(r + b"$$$$\n" for r in records))
    before = set(_children())
    assert small_runs.run_in_child(job) is None
    assert set(_children()) == before               # the dead child was reaped


def _children() -> list[int]:
    """This process's children, zombies too."""
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as fh:
        return [int(p) for p in fh.read().split()]


def test_a_process_that_ends_after_a_small_run_reaps_its_child_first(tmp_path):
    """A `gdl` process leaves through atexit handlers (flows/cli.py `entry`, the warm server's
    children): the child's pid, printed before, is gone once the process has ended, and was
    this process's child until then (a zombie reparented to init would linger)."""
    _job(tmp_path)
    script = ("import os, sys; from pipelines import small_runs; from pipelines.execute import prepare; "
              "from pipelines.spec import parse_spec; "
              f"job = prepare(parse_spec({{'name': 'm', 'domain': 'molecule', "
              f"'source': {str(tmp_path / 'mols.sdf')!r}, 'output': {str(tmp_path / 'ds2')!r}, "
              "'ops': {'eigenbasis': {'k': 2}}})); "
              "assert small_runs.run_in_child(job); print(small_runs._EXITING[0], flush=True); "
              "import atexit; atexit._run_exitfuncs(); "
              "os.waitpid(small_runs._EXITING[0], os.WNOHANG) if small_runs._EXITING else print('reaped'); "
              "os._exit(0)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    pid, reaped = done.stdout.split()
    assert reaped == "reaped" and not os.path.exists(f"/proc/{pid}")
