"""A warm server's child: what a fresh `gdl` process would be, minus the imports.

Runs right after the fork, in the child only (flows/warm_server.py `Server.fork`), either
for a command at hand or as the spare that waits for the next one. It cuts
itself off from the server (its own process group, none of the server's sockets, ended if
the server dies), takes over the client's stdin/stdout/stderr, working folder, environment,
umask, arguments and import path, then runs `flows.cli.main` and leaves as `gdl` does
(flows/cli.py `entry`): exit handlers, flush, `os._exit`.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import os
import select
import signal
import sys

from flows import warm_client as link
from flows import warm_pages

PR_SET_PDEATHSIG = 1             # linux/prctl.h


def wait_as_spare(server, sock, mask: set, close: list) -> None:
    """A spare child: cut off from the server now, write ahead the pages the last command copied
    until a command comes (its request and stdio come down `sock`), with signals still blocked,
    and become it. Never returns."""
    try:
        _leave_server(server, close)
        if server.write_ahead:
            warm_pages.write_ahead(warm_pages.load(server.pages_path),
                                   stop=lambda: bool(select.select([sock], [], [], 0)[0]))
        request, fds = link.recv_message(sock, max_fds=3)
    except BaseException:  # noqa: BLE001 - nothing to report to: no command yet
        os._exit(1)
    if request is None:                              # the server went without using it
        os._exit(0)
    _run_command(request, fds, mask, sock, functools.partial(_note_copies, server))


def become_command(server, request: dict, fds: list[int], mask: set, sock, close: list) -> None:
    """A child forked for this command (its exit status goes down `sock`): cut off from the
    server, become it. Never returns."""
    try:
        _leave_server(server, close)
    except BaseException:  # noqa: BLE001 - the server tells the client its exit status
        os._exit(1)
    _run_command(request, fds, mask, sock, functools.partial(_note_copies, server))


def _run_command(request: dict, fds: list[int], mask: set, sock, then) -> None:
    """Exits with the command's status, told to the server first (`_hand_back`), and calls
    `then()` once the client has it."""
    code = 1
    try:
        _take_over(request, fds)
        _compute_small_runs_here(request, sock)
        from flows import cli
        cli._stop_on_sigterm()                       # SIGTERM and SIGINT, before they are let through
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        code = cli.main(request["argv"])
    except KeyboardInterrupt as exc:                 # a signal outside main's own handling
        print(f"gdl: stopped by {exc or 'SIGINT'}", file=sys.stderr)
        code = 130
    except SystemExit as exc:                        # argparse: --help (0), bad usage (2)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException as exc:  # noqa: BLE001 - one line for the user, never a traceback
        print(f"gdl: the warm server could not run this command: {type(exc).__name__}: {exc} "
              f"(run it without the server: GDL_NO_WARM=1)", file=sys.stderr)
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            _hand_back(sock, code)
            then()
        finally:
            os._exit(code)


def _note_copies(server) -> None:
    """The server's pages this command copied, for the next spare to write ahead
    (flows/warm_pages.py). Its client has the exit status already: nobody waits for this."""
    try:
        warm_pages.save(server.pages_path, warm_pages.copied(server.resident))
    except Exception:  # noqa: BLE001 - only a speed-up: a command's outcome never depends on it
        pass


def _compute_small_runs_here(request: dict, sock) -> None:
    """A small run (pipelines/small_runs.py) is computed in this process, not in a fork of it
    (≈ 15 ms less), between two marks sent to the server: if this process dies between them
    without handing back its exit status, the server runs the command again in a new child with
    `isolated` set, which forks as `gdl` in its own process does (flows/warm_server.py `retry`)."""
    from pipelines import small_runs

    @contextlib.contextmanager
    def marked():
        sock.sendall(b"c")
        try:
            yield
        finally:
            sock.sendall(b"d")
    small_runs.compute_here(None if request.get("isolated") else marked)


def _hand_back(sock, code: int) -> None:
    """Everything the command does is done (files written, lock released, output flushed):
    let go of the client's stdin/stdout/stderr (a reader of its pipes sees their end now)
    and tell the server the exit status, so that the client has it before this process's
    address space is torn down. /dev/null takes their place: nothing written after this
    reaches a file that happens to get their numbers."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    sock.sendall(b"x%d\n" % code)


def _leave_server(server, close: list) -> None:
    """Own process group (the server can stop the child and its workers together), ended by
    SIGTERM when the server dies, none of the server's sockets or signal handlers: the
    client sees end of stream when the server goes, not when this child does."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != server.pid:
        os._exit(1)                                  # the server died before prctl took effect
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    server.sel.close()
    spare = server.spare.sock if server.spare is not None else None
    for sock in (server.listener, server.wake_r, server.wake_w, spare, *close,
                 *(s for run in server.runs.values() for s in (run.conn, run.child))):
        if sock is not None:
            sock.close()
    for run in server.runs.values():                 # other commands' stdio: their pipes end with them
        for fd in run.fds:
            os.close(fd)


def _take_over(request: dict, fds: list[int]) -> None:
    """The client's stdio, folder, environment, umask, arguments and import path."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    # The server's stdout is a log file (block-buffered); a terminal wants line buffering.
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    os.chdir(request["cwd"])
    dask_env = {k: v for k, v in os.environ.items() if k.startswith("DASK_")}
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    sys.argv = [request["argv0"], *request["argv"]]
    sys.path[:] = request["path"]
    import tempfile
    tempfile.tempdir = None                          # found again from this TMPDIR
    if dask_env != {k: v for k, v in os.environ.items() if k.startswith("DASK_")}:
        import dask.config
        dask.config.refresh()                        # Dask read DASK_* when the server imported it
