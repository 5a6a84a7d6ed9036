"""Helpers for tests that start real server processes on loopback."""
import contextlib
import os
import socket
import subprocess
import sys
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


@contextlib.contextmanager
def moto_server():
    """A real S3-compatible server (moto) on loopback, its endpoint and test credentials in the
    environment for as long as it runs (Dask and DataLoader workers started meanwhile inherit
    them); yields the endpoint. fsspec's cached S3 filesystems bound to it are dropped after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=0.5).close(), 30, "moto server")
        yield endpoint
    finally:
        stop(proc)
        import s3fs
        s3fs.S3FileSystem.clear_instance_cache()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
