"""One writer at a time per dataset: a lock file naming its holder, with stale-lock recovery.

Local folders use an exclusive create (O_EXCL), which is atomic. Taking over a stale lock is
done under an exclusive `flock` of the dataset folder, with the holder read again inside it:
so of many processes that find the same stale lock at once, one removes it, and the others
then find a live holder (two holders at once cannot happen). The kernel drops a `flock` when
its process dies, so this guard itself never goes stale. On object stores the lock is
advisory: it is written, read back and checked (two writers starting within the same instant
could both pass; the shards they write are input-addressed, so even then nothing is corrupted,
and the last manifest published wins).

Whoever takes the lock tidies what a crashed writer left in a gdl dataset (storage/recovery.py).
Releasing removes the lock file, and the output folder too when the lock created it and it
is still empty (a run refused before writing leaves nothing behind).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from typing import Iterator

from fsspec.implementations.local import LocalFileSystem

from storage.fs import join, read_bytes, resolve, write_bytes_atomic

LOCK = "_lock.json"
EMPTY_LOCK_SECONDS = 10.0


class DatasetLocked(RuntimeError):
    """Another writer holds the dataset."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DatasetLock:
    """`with DatasetLock(uri):` — fail fast (default) or `wait` seconds for the holder to finish.

    A lock whose holder process is gone (same host, pid not alive) is stale and taken over with
    a warning in `self.recovered`. A lock from another host is never broken automatically:
    the message says how to remove it by hand.
    """

    def __init__(self, uri: str, wait: float = 0.0, poll: float = 0.5):
        self.uri, self.wait, self.poll = uri, wait, poll
        self.fs, root = resolve(uri)
        self.path = join(root, LOCK)
        self.token = uuid.uuid4().hex
        self.recovered: dict | None = None
        self.created_folder = False
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                       "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def _try_create(self) -> bool:
        data = json.dumps(self.holder).encode()
        if isinstance(self.fs, LocalFileSystem):
            if not os.path.isdir(os.path.dirname(self.path)):
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self.created_folder = True
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        if self.fs.exists(self.path):
            return False
        write_bytes_atomic(self.fs, self.path, data)
        return json.loads(read_bytes(self.fs, self.path)).get("token") == self.token

    def current_holder(self) -> dict | None:
        try:
            return json.loads(read_bytes(self.fs, self.path))
        except (FileNotFoundError, ValueError):   # gone, or not (yet) a whole JSON document
            return None

    def _is_stale(self, holder: dict) -> bool:
        return holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1)))

    @contextlib.contextmanager
    def _takeover_guard(self) -> Iterator[None]:
        """Exclusive among processes of this host that take over this dataset's lock."""
        if not isinstance(self.fs, LocalFileSystem):
            yield
            return
        import fcntl
        fd = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # closing drops the flock

    def _abandoned_empty(self) -> bool:
        """A lock file still empty or unreadable after EMPTY_LOCK_SECONDS: its writer died
        between creating and filling it (a live one fills it within microseconds)."""
        try:
            age = time.time() - self.fs.info(self.path)["mtime"]
        except (FileNotFoundError, KeyError, TypeError):
            return False
        return age > EMPTY_LOCK_SECONDS

    def _take_over_if_stale(self) -> bool:
        """Remove a stale lock, deciding on a fresh read inside the guard. True if removed."""
        with self._takeover_guard():
            holder = self.current_holder()
            if holder is None and self._abandoned_empty():
                holder = {"pid": None, "host": None, "since": "an empty lock file"}
            elif not holder or not self._is_stale(holder):
                return False
            self.fs.rm(self.path)
        self.recovered = holder
        return True

    def acquire(self) -> "DatasetLock":
        from storage.recovery import recover_after_crash

        deadline = time.monotonic() + self.wait
        while True:
            if self._try_create():
                try:
                    recover_after_crash(self.uri)
                except BaseException:
                    self.release()
                    raise
                return self
            holder = self.current_holder()
            if (holder is None or self._is_stale(holder)) and self._take_over_if_stale():
                continue
            if time.monotonic() >= deadline:
                who = (f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
                       if holder else "another writer")
                raise DatasetLocked(
                    f"{self.uri} is being written by {who}. Wait for it (gdl preprocess --wait SECONDS), "
                    f"or, if that process is gone, delete {self.path}")
            time.sleep(self.poll)

    def release(self) -> None:
        holder = self.current_holder()
        if holder and holder.get("token") == self.token:
            self.fs.rm(self.path)
            if self.created_folder:
                with contextlib.suppress(OSError):   # only succeeds when nothing else was written
                    os.rmdir(os.path.dirname(self.path))

    def __enter__(self) -> "DatasetLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
