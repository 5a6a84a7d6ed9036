"""Helpers for tests that start real server processes on loopback."""
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, seconds: float, what: str, poll: float = 0.5):
    """Call `ready()` until it returns without OSError; re-raise after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return ready()
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not ready within {seconds} s") from None
            time.sleep(poll)


def stop(proc: subprocess.Popen) -> None:
    """Terminate a process we started, then kill it if it does not exit."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
