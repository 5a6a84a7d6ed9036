"""`gdl warm start|stop|status`: a resident process that has imported the whole stack once and
forks a child per command, so that a small re-run does not pay 0.3-0.4 s of imports each time.

The same idea as Rails' Spring, Nailgun or dmypy. The server imports numpy, pyarrow, RDKit,
scipy, Dask, the readers, the op registry and the pipelines, then listens on a Unix socket
(flows/warm_client.py names it after the code and setting it serves). For each request it
forks a child that takes over the client's stdin, stdout and stderr (passed by SCM_RIGHTS),
its arguments, working folder, environment and umask, runs `flows.cli.main` as a fresh `gdl`
process would, and exits; the server sends the exit status back (while idle it keeps one
child forked ahead, waiting for the next command). The server runs one thread
only, so a fork copies no lock held by another thread: it waits on its sockets and on its
children's exits (SIGCHLD through a wake-up socket) with one `selectors` loop. A signal the
client gets is relayed to the child; a client that goes away has its child stopped (SIGTERM,
then after 10 s SIGKILL to the child's process group); a server that dies takes its children
with it (PR_SET_PDEATHSIG). The server stops after its idle time, on `gdl warm stop`, on
SIGTERM, or when the project's files change, and removes its socket.

This module: the verbs. flows/warm_server.py: the server's loop; flows/warm_child.py: what a
child does before it runs the command.
"""
from __future__ import annotations

import os
import sys
import time

from flows import warm_client as link


def add_warm_parser(sub) -> None:
    """`gdl warm ...` among the subcommands of flows/cli.py's parser."""
    p = sub.add_parser("warm", help="a resident process that runs preprocess, validate and inspect "
                       "without their 0.3-0.4 s of imports (opt-in)",
                       description="start|stop|status a warm server for this code: later `gdl preprocess`, "
                       "`validate` and `inspect` commands are run by a fork of it. GDL_NO_WARM=1 ignores it.")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--idle-minutes", type=float, default=30.0, help="start: stop after this long unused (default 30)")
    p.add_argument("--all", action="store_true", help="stop: every server of this user, of any code")
    p.add_argument("--json", action="store_true", help="status: machine-readable")
    p.set_defaults(func=cmd_warm)


def cmd_warm(args) -> int:
    """The `gdl warm` verbs."""
    if args.action == "start":
        if not args.idle_minutes > 0:
            print(f"gdl warm: error: --idle-minutes must be a number > 0, not {args.idle_minutes:g}", file=sys.stderr)
            return 2
        return start(args.idle_minutes)
    if args.action == "stop":
        return stop(every=args.all)
    return status(as_json=args.json)


def ask(path: str, op: str) -> dict | None:
    """A server's answer to `status` or `stop`; None when nothing answers at `path`."""
    import socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
            link.send_message(sock, {"op": op})
            return link.recv_message(sock)[0]
    except OSError:
        return None


def start(idle_minutes: float) -> int:
    """Start this code's server in the background (its own session, output to a log file next
    to its socket) and wait until it answers."""
    import subprocess
    root = link.code_root()
    fp = link.fingerprint(root, link.code_stamp(root))
    path = link.socket_path(fp)
    link.warm_dir(make=True)
    running = ask(path, "status")
    if running:
        print(f"gdl warm: already running for {root} (pid {running['pid']})")
        return 0
    log = path[:-len(".sock")] + ".log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.warm", "--idle-minutes", str(idle_minutes),
                                 "--fingerprint", fp], cwd=root, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        info = ask(path, "status")
        if info:
            print(f"gdl warm: started for {root} (pid {info['pid']}, imports {info['import_seconds']:.1f} s); "
                  f"serves gdl {', '.join(link.FORWARDED)}; stops after {idle_minutes:g} idle minutes "
                  f"or `gdl warm stop`")
            return 0
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    with open(log, errors="replace") as fh:
        last = fh.read().strip().splitlines()[-1:] or ["no output"]
    print(f"gdl warm: error: the server did not start: {last[0]} (log: {log})", file=sys.stderr)
    return 1


def _servers() -> list[str]:
    folder = link.warm_dir()
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.startswith("warm-") and n.endswith(".sock"))


def stop(every: bool = False) -> int:
    """Stop this code's server (with `every`, every server of this user); commands it is running
    finish first, new ones run without it at once."""
    mine = link.this_socket()
    stopped = 0
    for path in _servers() if every else [mine]:
        info = ask(path, "stop")
        if info:
            stopped += 1
            print(f"gdl warm: stopping the server for {info['root']} (pid {info['pid']}"
                  + (f", after its {info['running']} running command(s))" if info["running"] else ")"))
    if not stopped:
        print("gdl warm: no server was running" + ("" if every else " for this code"))
    return 0


def status(as_json: bool = False) -> int:
    """Every server of this user; exit 0 when one serves this code, 1 when none does."""
    import json
    mine = link.this_socket()
    rows = [dict(info, this_code=(path == mine), socket=path)
            for path in _servers() for info in [ask(path, "status")] if info]
    if as_json:
        print(json.dumps(rows, indent=2))
    for row in [] if as_json else rows:
        idle = f"idle {row['idle_seconds'] / 60:.1f} of {row['idle_minutes']:g} min"
        print(f"{'this code' if row['this_code'] else 'other code'}: pid {row['pid']}, {row['root']}, "
              f"up {row['up_seconds'] / 60:.1f} min, {row['served']} command(s) served, "
              f"{len(row['running'])} running, {idle}")
    if not as_json and not any(r["this_code"] for r in rows):
        print(f"gdl warm: no server for this code ({link.code_root()}); start one with `gdl warm start`")
    return 0 if any(r["this_code"] for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    """The server process (`gdl warm start` starts it)."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m flows.warm")
    parser.add_argument("--idle-minutes", type=float, default=30.0)
    parser.add_argument("--fingerprint", help="the fingerprint the starting command computed")
    args = parser.parse_args(argv)
    from flows.warm_server import Server, ServerError
    try:
        server = Server.prepare(args.idle_minutes, args.fingerprint)
    except ServerError as exc:
        print(f"gdl warm: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return server.serve()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)          # tearing down the imported stack's modules one by one takes seconds
