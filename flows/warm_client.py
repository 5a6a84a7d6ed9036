"""The `gdl` side of the warm server (flows/warm.py): find a server for this code, hand it the
command, relay signals and the exit status.

Imported by every `gdl` command before anything heavy, so it imports only what Python has
loaded at start-up, and the C modules under `socket`, `json` and `signal` (`_socket`, `marshal`,
`_signal`): those three modules were 7-8 ms of a forwarded command's 40 (their own imports:
enum, selectors, re). Its cost is measured in bench/RESULTS.md ("Warm server").

A server is used only when it runs the same code in the same setting: the socket's name is a
hash of the project's .py files (paths, sizes, modification times), the interpreter, the
installed packages (their folders' modification times) and the environment variables that
take effect when modules are imported. An edited checkout, another venv, another PYTHONPATH
or thread setting finds no server and runs in its own process, as without one.
"""
from __future__ import annotations

import os
import sys

PACKAGES = ("storage", "gdl_data", "pipelines", "flows")
FORWARDED = ("preprocess", "validate", "inspect")   # read files, write a dataset: nothing else
# Read once, when a module is imported (BLAS thread counts, PYTHONPATH, GDL_FILE_TIME_LIMIT):
# a server imported under other values would not behave as this process would.
IMPORT_TIME_ENV = ("PYTHON", "OMP_", "OPENBLAS_", "MKL_", "BLIS_", "VECLIB_", "NUMEXPR_", "LD_", "GDL_")
NOT_IMPORT_TIME = ("GDL_NO_WARM", "GDL_WARM_DIR")
SIGNALS_RELAYED = (2, 15, 1)                          # SIGINT, SIGTERM, SIGHUP
HANDSHAKE_SECONDS = 30


def code_root() -> str:
    """The folder holding this checkout's four packages."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_stamp(root: str) -> str:
    """Path, size and modification time of every .py file of the project: changes with any edit."""
    parts = []
    for package in PACKAGES:
        stack = [os.path.join(root, package)]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                        stack.append(entry.path)
                    elif entry.name.endswith(".py"):
                        st = entry.stat()
                        parts.append(f"{entry.path}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(sorted(parts))


def setting_stamp(environ=os.environ) -> str:
    """The interpreter, the installed packages' folders and the import-time environment."""
    import site                                     # loaded at start-up: free
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    stamps = [f"{p}:{os.stat(p).st_mtime_ns}" for p in folders if os.path.isdir(p)]
    env = sorted(f"{k}={v}" for k, v in environ.items()
                 if k.startswith(IMPORT_TIME_ENV) and k not in NOT_IMPORT_TIME)
    # The interpreter by its real path: `gdl` (whose first line names .venv/bin/python3.11) and
    # `python -m flows.cli` (.venv/bin/python) are the same interpreter and packages.
    return "\n".join([os.path.realpath(sys.executable), sys.prefix, sys.version, *stamps, *env])


def fingerprint(root: str, stamp: str, environ=os.environ) -> str:
    try:
        from _blake2 import blake2b          # what hashlib.blake2b is, without loading OpenSSL (2 ms)
    except ImportError:
        from hashlib import blake2b
    return blake2b(f"{root}\n{stamp}\n{setting_stamp(environ)}".encode(errors="surrogateescape"),
                           digest_size=10).hexdigest()


def warm_dir(make: bool = False) -> str:
    """GDL_WARM_DIR, else $XDG_RUNTIME_DIR/gdl-data, else /tmp/gdl-data-$UID; private (0700)."""
    path = os.environ.get("GDL_WARM_DIR") or (
        os.path.join(os.environ["XDG_RUNTIME_DIR"], "gdl-data") if os.environ.get("XDG_RUNTIME_DIR")
        else f"/tmp/gdl-data-{os.getuid()}")
    if make:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise PermissionError(f"{path} must be a folder only you can read and write "
                                  f"(owner uid {st.st_uid}, mode {st.st_mode & 0o777:o}); "
                                  f"remove it, or set GDL_WARM_DIR to another folder")
    return path


def socket_path(fp: str) -> str:
    return os.path.join(warm_dir(), f"warm-{fp}.sock")


def this_socket() -> str:
    root = code_root()
    return socket_path(fingerprint(root, code_stamp(root)))


def forwardable(argv: list[str], environ=os.environ) -> bool:
    """The commands a server runs: never a Prefect flow (its server, threads and settings belong
    to one process), never training (CUDA does not survive a fork), never the warm verbs."""
    if environ.get("GDL_NO_WARM", "") not in ("", "0"):
        return False
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in FORWARDED:
        return False
    return not (command == "preprocess" and ("--prefect" in argv or environ.get("PREFECT_API_URL")))


def send_message(sock, message: dict, fds: list[int] = ()) -> None:
    """A length-prefixed message, with `fds` passed along (SCM_RIGHTS). `sock`: a socket.socket
    or the bare _socket.socket the client uses. The body is `marshal`'s encoding (built in:
    json would load `re`); only processes of this user, of the same interpreter (the socket's
    name says so), ever read it."""
    import _socket
    import marshal
    body = marshal.dumps(message)
    data = len(body).to_bytes(4, "big") + body
    sent = 0
    if fds:
        rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)   # C ints
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    if sent < len(data):         # an empty send fails (EPIPE) once the other end has closed
        sock.sendall(data[sent:])


def recv_message(sock, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """The next message and the file descriptors sent with it; (None, []) at end of stream;
    ValueError for a message that is not one."""
    import marshal
    fds: list[int] = []
    head = b""
    while len(head) < 4:
        if max_fds and not head:
            chunk, fds = _recv_fds(sock, 4, max_fds)
        else:
            chunk = sock.recv(4 - len(head))
        if not chunk:
            return None, fds
        head += chunk
    size, body = int.from_bytes(head, "big"), b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None, fds
        body += chunk
    try:
        message = marshal.loads(body)
    except (EOFError, TypeError) as exc:
        raise ValueError(f"not a message: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError(f"not a message: {type(message).__name__}")
    return message, fds


def _recv_fds(sock, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    """socket.recv_fds without the socket module."""
    import _socket
    data, ancillary, _, _ = sock.recvmsg(size, _socket.CMSG_LEN(max_fds * 4))
    fds = []
    for level, kind, rights in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(rights[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, len(rights) - len(rights) % 4, 4)]
    return data, fds


def forward(argv: list[str]) -> int | None:
    """Run `gdl argv` in this code's warm server and return its exit status; None when there is
    no server for this code (or it declines), so the caller runs the command itself."""
    if not forwardable(argv):
        return None
    try:
        path, cwd = this_socket(), os.getcwd()
    except OSError:                  # a checkout or working folder that cannot be read: run here
        return None
    if not os.path.exists(path):
        return None
    sock = _connect(path)
    if sock is None:
        return None
    try:
        return _hand_over(sock, path, cwd, argv)
    finally:
        sock.close()


def _hand_over(sock, path: str, cwd: str, argv: list[str]) -> int | None:
    """The request, then the command's exit status (None: declined, run here)."""
    umask = os.umask(0o022)
    os.umask(umask)
    request = {"op": "run", "argv": argv, "argv0": sys.argv[0], "cwd": cwd, "env": dict(os.environ),
               "path": sys.path, "umask": umask, "fingerprint": os.path.basename(path)[5:-5]}
    try:
        send_message(sock, request, [0, 1, 2])
    except OSError:              # the server did not take the request: nothing ran
        return None
    try:
        reply, _ = recv_message(sock)
        if reply is None:        # no answer either: the server may have started it all the same
            raise OSError("it closed the connection")
    except KeyboardInterrupt:    # Ctrl-C before the relay is set up: the server stops what started
        print("gdl: stopped by SIGINT", file=sys.stderr)
        return 130
    except (OSError, ValueError) as exc:   # it may have started: running it here too could run it twice
        print(f"gdl: the warm server at {path} did not answer ({exc or 'timed out'}); exit status 1. "
              f"Stop it with `gdl warm stop`, or run without it: GDL_NO_WARM=1", file=sys.stderr)
        return 1
    if "pid" not in reply:
        return None              # declined, saying why (stopping, other code): run here
    return _wait_for_exit(sock, reply["pid"])


def _connect(path: str):
    import _socket
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(HANDSHAKE_SECONDS)
    try:
        for fd in (0, 1, 2):         # a closed stdin/stdout/stderr cannot be handed over
            os.fstat(fd)
        sock.connect(path)
        return sock
    except OSError:                  # a socket left by a server that was killed: run here
        sock.close()
        return None


def _wait_for_exit(sock, pid: int) -> int:
    """Relay SIGINT / SIGTERM / SIGHUP to the command (the server signals it), then return its
    exit status; a server that ends first is reported in one line."""
    import _signal

    def relay(signum, _frame):
        try:
            sock.send(bytes([signum]))
        except OSError:
            pass
    for signum in SIGNALS_RELAYED:
        _signal.signal(signum, relay)
    sock.settimeout(None)
    try:
        reply, _ = recv_message(sock)
    except (OSError, ValueError):
        reply = None
    if reply and "exit" in reply:
        return int(reply["exit"])
    print(f"gdl: the warm server ended while running this command (its process {pid} was stopped "
          f"with it); exit status 1. Run the command again (without the server: GDL_NO_WARM=1)",
          file=sys.stderr)
    return 1
