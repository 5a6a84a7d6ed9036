"""The warm server's process: import once, then fork one child per `gdl` command
(flows/warm.py describes the whole; flows/warm_client.py the other end of the socket)."""
from __future__ import annotations

import errno
import functools
import gc
import glob
import importlib
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass

from flows import warm_child
from flows import warm_client as link
from flows import warm_pages

STOP_GRACE_SECONDS = 10        # a child whose client went away: SIGTERM, then SIGKILL after this
CHECK_SECONDS = 2.0            # how often the server looks whether its code or packages changed
# What `gdl preprocess`, `validate` and `inspect` import, and what a first run's cluster start
# imports (pipelines/cluster.py), so that a child finds them loaded. Not torch: nothing
# forwarded trains, and CUDA does not survive a fork.
PRELOAD = ("ctypes", "numpy", "pyarrow", "pyarrow.parquet", "pyarrow.dataset", "pyarrow.compute",
           "fsspec", "yaml", "scipy.linalg", "scipy.sparse", "scipy.sparse.csgraph", "scipy.sparse.linalg",
           "scipy.spatial", "dask", "distributed", "tempfile", "storage", "storage.arrays", "gdl_data.ops",
           "gdl_data.readers", "pipelines.spec", "pipelines.validate", "pipelines.execute",
           "pipelines.small_runs", "pipelines.compute", "pipelines.cluster", "pipelines.summary",
           "storage.recovery", "flows.report", "flows.cli", "flows.warm")
CHILD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD}


class ServerError(Exception):
    """The server cannot start; the message says why."""


@dataclass
class Spare:
    pid: int
    sock: socket.socket                  # the request and its stdio go down this


@dataclass
class Run:
    pid: int
    conn: socket.socket | None          # None once the client went away or has its exit status
    started: float
    command: str
    request: dict
    fds: list[int]                       # the client's stdio, kept for a re-run (`Server.retry`)
    child: socket.socket | None = None   # marks and the exit status come down this from the child
    inbox: bytes = b""
    computing: bool = False              # between the child's marks: computing a small run itself
    signalled: bool = False              # the server signalled the child (relayed, client gone)
    retried: bool = False
    kill_at: float | None = None         # when the child's process group gets SIGKILL


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def preload() -> None:
    """Import what a command would, and do the one-time work `gdl` does at start."""
    for name in PRELOAD:
        importlib.import_module(name)
    from gdl_data.readers import LIBRARIES, supported_extensions
    for names in LIBRARIES.values():
        for name in names:
            importlib.import_module(name)
    supported_extensions("mesh")                 # loads every domain's reader module
    from flows.cli import _quiet_libraries, parser
    _quiet_libraries()
    for command in (["preprocess", "x.yaml"], ["validate", "x.yaml"], ["inspect", "x"]):
        parser().parse_args(command)              # argparse's regular expressions, compiled once
    from storage.arrays import skip_pandas_probe
    skip_pandas_probe()
    # A value a command computes once per process from the installed packages (importlib
    # metadata: 23 ms a run here) is computed here once when its function caches it; an upgrade
    # changes the server's fingerprint, so the cached value cannot go stale.
    from pipelines.execute import software_versions
    if hasattr(software_versions, "cache_info"):
        software_versions()
    warm_up()
    _render_table()
    # Out of the garbage collector's sight: a child would otherwise run a full collection over
    # the whole imported stack on its first allocations (0.13 s of a 0.25 s re-run here) and,
    # by writing every object's header, copy most of the server's memory.
    gc.collect()
    gc.freeze()


def warm_up() -> None:
    """Read, compute and write two small molecules here, in a temporary folder: the first call of
    each costs a command ≈ 30 ms otherwise (RDKit's parser, LAPACK, the Parquet writer's setup),
    which every forked child would pay again. Threads it starts (planning's file stats) have
    ended when it returns, so the server still forks from one thread."""
    import tempfile

    from pipelines.compute import compute_shard
    from pipelines.demo_data import write_conformer_sdf
    from pipelines.execute import prepare
    from pipelines.spec import parse_spec
    with tempfile.TemporaryDirectory(prefix="gdl-warm-up-") as folder:
        write_conformer_sdf(os.path.join(folder, "warm.sdf"), 2, seed=0)
        spec = parse_spec({"name": "warm-up", "domain": "molecule", "source": os.path.join(folder, "warm.sdf"),
                           "output": os.path.join(folder, "out"),
                           "ops": {"neighborhoods": {"radius": 5.0}, "eigenbasis": {"k": 4}}})
        job = prepare(spec)
        for shard in job.plan.todo:
            compute_shard(spec.output, shard, spec.domain, spec.ops, job.labels, spec.layout(), budget=1 << 30)


def _render_table() -> None:
    """A rich table printed to nowhere: loads the emoji and character-width tables that
    `gdl inspect` (flows/report.py) loads on its first print, ≈ 5 ms a command otherwise."""
    import io

    from rich.console import Console
    from rich.table import Table
    table = Table("column", title="warm-up")
    table.add_row("(8–12, 3)")                  # not ASCII: only then are the widths looked up
    Console(file=io.StringIO()).print(table)


def _received(sock: socket.socket, size: int) -> bytes | None:
    """What a non-blocking socket has for us: None when nothing yet, b"" at end of stream (or
    when it broke)."""
    try:
        return sock.recv(size)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def listen(path: str) -> socket.socket:
    """Bind the socket at `path`; one left by a killed server is replaced, a live one is not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise ServerError(f"cannot listen on {path}: {exc.strerror}") from exc
        from flows.warm import ask
        if ask(path, "status"):
            raise ServerError(f"a server for this code is already running ({path})") from exc
        os.unlink(path)
        sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(64)
    return sock


def same_user(conn: socket.socket) -> bool:
    """Only this user's processes may run commands here (the folder is private too)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


class Server:
    def __init__(self, listener: socket.socket, path: str, fp: str, idle_minutes: float, import_seconds: float):
        self.listener, self.path, self.fp = listener, path, fp
        self.inode = os.stat(path).st_ino
        self.idle_minutes, self.import_seconds = idle_minutes, import_seconds
        self.root, self.pid = link.code_root(), os.getpid()
        self.runs: dict[int, Run] = {}
        self.spare: Spare | None = None
        self.served, self.started = 0, time.monotonic()
        self.last_active = self.last_check = self.started
        self.stop_reason: str | None = None
        self.signalled: str | None = None       # SIGTERM / SIGINT / SIGHUP received: stop
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.resident = warm_pages.resident()   # after the imports: what a child may copy
        self.write_ahead = True

    @classmethod
    def prepare(cls, idle_minutes: float, expected: str | None) -> Server:
        """Import the stack, check that it is the code the starting command saw and that no
        thread was started, then listen."""
        root = link.code_root()
        before, start = link.code_stamp(root), time.perf_counter()
        preload()
        seconds = time.perf_counter() - start
        if link.code_stamp(root) != before:
            raise ServerError("the project's files changed while the server imported them; start it again")
        fp = link.fingerprint(root, before)
        if expected and fp != expected:
            raise ServerError("the server sees other code, packages or settings than the command that started it")
        # Python threads only: numpy's OpenBLAS runs a native worker thread in every process,
        # and stops it around a fork itself (pthread_atfork), as for the Dask workers and small
        # runs (pipelines/cluster.py, pipelines/small_runs.py) that fork such processes too.
        if threading.active_count() != 1:
            names = ", ".join(t.name for t in threading.enumerate())
            raise ServerError(f"importing the stack started threads ({names}): forking would not be safe")
        link.warm_dir(make=True)
        path = link.socket_path(fp)
        return cls(listen(path), path, fp, idle_minutes, seconds)

    @property
    def pages_path(self) -> str:
        """The pages the last command copied, for the next spare to write ahead (flows/warm_pages.py)."""
        return self.path[:-len(".sock")] + ".pages"

    def serve(self) -> int:
        for sock in (self.wake_r, self.wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)           # only to wake the loop
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):   # acted on by housekeep
            signal.signal(signum, lambda s, _f: setattr(self, "signalled", signal.Signals(s).name))
        self.sel.register(self.listener, selectors.EVENT_READ, self.accept)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self.drain_wakeups)
        log(f"serving {self.root} on {self.path} (pid {os.getpid()}, imports {self.import_seconds:.2f} s, "
            f"idle limit {self.idle_minutes:g} min)")
        while self.listener is not None or self.runs:
            for key, _ in self.sel.select(timeout=1.0):
                key.data()
            self.reap()
            self.escalate()
            self.housekeep()
        log(f"stopped ({self.stop_reason}); {self.served} command(s) served")
        # A clean stop leaves nothing (a child killed while saving its pages left a .tmp); a
        # crash leaves its log.
        for leftover in (self.path[:-len(".sock")] + ".log", self.pages_path,
                         *glob.glob(glob.escape(self.pages_path) + ".*.tmp")):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
        return 0

    def stop(self, reason: str) -> None:
        """No new commands (the socket goes at once); running ones finish."""
        self.stop_reason = self.stop_reason or reason
        if self.listener is None:
            return
        if self.spare is not None:
            os.kill(self.spare.pid, signal.SIGKILL)           # it has done nothing yet
            self.spare.sock.close()
            self.spare = None
        self.sel.unregister(self.listener)
        self.listener.close()
        self.listener = None
        try:
            if os.stat(self.path).st_ino == self.inode:        # ours, not a newer server's
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def housekeep(self) -> None:
        now = time.monotonic()
        if self.signalled:
            self.stop(self.signalled)
        if self.spare is None and self.listener is not None:
            # Also while a command runs: the spare's fork and its writing ahead (≈ 40 ms of one
            # core, flows/warm_pages.py) are then done before the next command comes.
            self.make_spare()
        if not self.runs and now - self.last_active > self.idle_minutes * 60:
            self.stop(f"idle for {self.idle_minutes:g} min")
        if now - self.last_check > CHECK_SECONDS:
            self.last_check = now
            if link.fingerprint(self.root, link.code_stamp(self.root)) != self.fp:
                self.stop("its code or installed packages changed")

    def drain_wakeups(self) -> None:
        try:
            while self.wake_r.recv(512):
                pass
        except BlockingIOError:
            pass

    def status(self) -> dict:
        now = time.monotonic()
        return {"pid": os.getpid(), "root": self.root, "fingerprint": self.fp, "served": self.served,
                "running": sorted(self.runs), "spare": self.spare.pid if self.spare else None,
                "up_seconds": now - self.started,
                "idle_seconds": 0.0 if self.runs else now - self.last_active,
                "idle_minutes": self.idle_minutes, "import_seconds": self.import_seconds,
                "write_ahead": self.write_ahead}

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(5)
        fds: list[int] = []
        try:
            if same_user(conn):
                request, fds = link.recv_message(conn, max_fds=3)
                self.answer(conn, request or {}, fds)
                return
        except (OSError, ValueError) as exc:
            log(f"a request failed: {exc}")
        finally:
            for fd in fds:                                     # the child has its own copies
                os.close(fd)
        conn.close()

    def answer(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        op = request.get("op")
        if op == "run":
            refused = self.refusal(request, fds)
            if refused is None:
                return self.start_run(conn, request, fds)
            link.send_message(conn, {"refused": refused})
        elif op == "status":
            link.send_message(conn, self.status())
        elif op == "stop":
            link.send_message(conn, dict(self.status(), running=len(self.runs)))
            self.stop("gdl warm stop")
        conn.close()

    def refusal(self, request: dict, fds: list[int]) -> str | None:
        """Why this request runs in the client's own process instead (None: it runs here)."""
        if self.listener is None:
            return "the server is stopping"
        if request.get("fingerprint") != self.fp:
            return "the server runs other code"
        if len(fds) != 3:
            return "stdin, stdout and stderr did not arrive"
        if threading.active_count() != 1:
            return "the server has threads: forking is unsafe"
        return None

    def start_run(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        pid, child = self.launch(conn, request, fds)
        run = Run(pid, conn, time.monotonic(), " ".join(request["argv"][:2]), request,
                  [os.dup(fd) for fd in fds], child)
        self.runs[pid] = run
        self.sel.register(conn, selectors.EVENT_READ, functools.partial(self.from_client, run))
        child.setblocking(False)
        self.sel.register(child, selectors.EVENT_READ, functools.partial(self.from_child, run))
        self.served += 1
        self.last_active = run.started
        try:
            link.send_message(conn, {"pid": pid})
        except OSError:                      # the client gave up waiting: it runs the command itself
            self.client_gone(run)
            return
        conn.setblocking(False)

    def launch(self, conn: socket.socket, request: dict, fds: list[int]) -> tuple[int, socket.socket]:
        """The pid of the process now running the command and the socket its exit status comes
        down: the spare child, forked ahead (a fork of this process takes 10-15 ms), else a new fork."""
        spare, self.spare = self.spare, None
        if spare is not None:
            try:
                link.send_message(spare.sock, request, fds)
                return spare.pid, spare.sock
            except OSError:                  # it died meanwhile: reaped with the others
                spare.sock.close()
        ours, theirs = socket.socketpair()
        pid = self.fork(lambda mask: warm_child.become_command(self, request, fds, mask, theirs,
                                                               close=[conn, ours]))
        theirs.close()
        return pid, ours

    def make_spare(self) -> None:
        """A child that waits for the next command with everything but the command done."""
        ours, theirs = socket.socketpair()
        pid = self.fork(lambda mask: warm_child.wait_as_spare(self, theirs, mask, close=[ours]))
        theirs.close()
        self.spare = Spare(pid, ours)

    def fork(self, then) -> int:
        """Fork; the child calls `then(mask)` and never returns. Signals stay blocked across the
        fork so that none reaches the child before it has the handlers a `gdl` process has."""
        sys.stdout.flush()
        sys.stderr.flush()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)
        pid = os.fork()
        if pid == 0:
            then(mask)                                          # leaves with os._exit
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return pid

    def from_client(self, run: Run) -> None:
        """Signal numbers to relay to the child; end of stream: the client went away (killed),
        so its command is stopped as SIGTERM would stop it, and killed if it lingers."""
        data = _received(run.conn, 64)
        if data is None:
            return
        if not data:
            return self.client_gone(run)
        for signum in data:
            if signum in link.SIGNALS_RELAYED:   # SIGHUP unwinds like SIGTERM (lock released, work kept)
                self.signal(run, signal.SIGTERM if signum == signal.SIGHUP else signum)

    def client_gone(self, run: Run) -> None:
        self.drop_client(run)
        self.signal(run, signal.SIGTERM)
        run.kill_at = time.monotonic() + STOP_GRACE_SECONDS

    def signal(self, run: Run, signum: int) -> None:
        run.signalled = True
        try:
            os.kill(run.pid, signum)            # not reaped yet: the pid is still this child's
        except ProcessLookupError:
            pass

    def drop_client(self, run: Run) -> None:
        if run.conn is not None:
            self.sel.unregister(run.conn)
            run.conn.close()
            run.conn = None

    def from_child(self, run: Run) -> None:
        """What a child tells: b"c" / b"d" around a small run it computes itself (a death in
        between is retried: `retry`), then b"x<status>\\n" once everything its command does is
        done (files, lock, output flushed, its stdio let go), just before it exits: the client
        has it without waiting for the child's 280 MB address space to be torn down (≈ 10 ms).
        End of stream without it: the child died; its wait status is reported when reaped."""
        while run.child is not None:
            data = _received(run.child, 4096)
            if data is None:
                return
            if not data:
                return self.drop_child(run)
            run.inbox += data
            while run.inbox[:1] in (b"c", b"d"):
                run.computing, run.inbox = run.inbox[:1] == b"c", run.inbox[1:]
            status, newline, _ = run.inbox.partition(b"\n")
            if newline and status[:1] == b"x" and status[1:].lstrip(b"-").isdigit():
                self.report(run, int(status[1:]))

    def drop_child(self, run: Run) -> None:
        if run.child is not None:
            self.sel.unregister(run.child)
            run.child.close()
            run.child = None

    def report(self, run: Run, code: int) -> None:
        """The exit status to the client, which then ends; once per run."""
        self.close_stdio(run)
        if run.conn is not None:
            try:
                run.conn.setblocking(True)
                link.send_message(run.conn, {"exit": code})
            except OSError:
                pass
            self.drop_client(run)

    def close_stdio(self, run: Run) -> None:
        for fd in run.fds:
            os.close(fd)
        run.fds = []

    def retry(self, run: Run, wait_status: int) -> bool:
        """A child that died computing a small run in its own process (pipelines/small_runs.py
        `compute_here`), neither signalled by the server nor having told its exit status, has its
        command run again, once, by a new child whose small runs fork as in a `gdl` process of
        its own: a sample that kills that fork becomes an error row, the run completes. The
        dead child's lock is stale by then (it is reaped); shards it finished are resumed."""
        if run.conn is None or not run.computing or run.signalled or run.retried or not run.fds:
            return False
        log(f"child {run.pid} (gdl {run.command}) died computing in its own process "
            f"(wait status {wait_status}); its command runs again with its computation forked")
        request = dict(run.request, isolated=True)
        ours, theirs = socket.socketpair()
        fds, conn = run.fds, run.conn
        pid = self.fork(lambda mask: warm_child.become_command(self, request, fds, mask, theirs, close=[conn, ours]))
        theirs.close()
        self.close_stdio(run)
        run.pid, run.child, run.inbox, run.computing, run.retried = pid, ours, b"", False, True
        ours.setblocking(False)
        self.sel.register(ours, selectors.EVENT_READ, functools.partial(self.from_child, run))
        self.runs[pid] = run
        return True

    def reap(self) -> None:
        """Collect ended children; send each one's exit status to its client (unless the child
        sent it itself)."""
        while self.runs or self.spare is not None:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare.pid:
                log(f"the spare child {pid} ended by itself ({wait_status}); another is made, "
                    f"which writes no pages ahead")
                self.write_ahead = False                         # in case that is what ended it
                self.spare.sock.close()
                self.spare = None
            run = self.runs.pop(pid, None)
            if run is None:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            code = 128 - code if code < 0 else code              # killed by signal N: 128 + N
            self.from_child(run)                                 # what it sent before it died
            self.drop_child(run)
            if self.retry(run, wait_status):
                continue
            self.report(run, code)
            self.last_active = time.monotonic()
            log(f"child {pid} (gdl {run.command}): exit {code} after {self.last_active - run.started:.2f} s")

    def escalate(self) -> None:
        now = time.monotonic()
        for run in self.runs.values():
            if run.kill_at is not None and now >= run.kill_at:
                log(f"child {run.pid} did not stop within {STOP_GRACE_SECONDS} s of losing its client: SIGKILL")
                try:
                    os.killpg(run.pid, signal.SIGKILL)              # with the Dask workers it started
                except ProcessLookupError:
                    pass
                run.kill_at = float("inf")
