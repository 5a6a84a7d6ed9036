"""A bounded local cache of remote Parquet shards (s3://, gs://, ...), shared by workers and ranks.

Streaming from object storage reads each row group with a ranged request per column chunk; a
whole shard downloaded once and memory-mapped is faster and is read again from local disk by
later epochs. Shards are immutable (named by the hash of their content), so a cached copy is
never stale; it is checked against the manifest's `sha256` when its last byte arrives.

Read while it arrives: a shard is downloaded in order into `<name>.part` (from S3 by curl through a
presigned URL, outside the training process and its GIL; otherwise by fsspec), whose size says how
much has arrived, and a reader that needs row group g waits only until the bytes up to g's end are
there (storage/pages.py group_end; the footer is known from the manifest's shard), not for the
whole shard: the first epoch starts yielding after one row group instead of one shard. Any
process may read a `.part` that another is writing. A shard whose bytes turn out not to match
its sha256 is deleted and the error raised in the reader; samples already yielded from it came
from a file that was changed after commit.

Bounded: before a shard is downloaded, and again before it is put in place, the least recently
used shards are deleted until it fits with the others in `max_bytes`, except shards being
downloaded or read through `open` at that moment (the evictor only deletes what it can lock
exclusively); a shard deleted while a reader has it mapped stays readable to that reader. So the
cache may exceed `max_bytes` only by shards in use; size it to at least (prefetch + 1) shards per
reader. Safe for concurrent processes (DataLoader workers, ranks, jobs) on one machine: a shard
is downloaded by one process while the others wait for it (`fcntl.flock` on a lock file per
shard) or read what has arrived; a download killed half-way is resumed from where it stopped by
the next one (the bytes already there are hashed, not fetched again).

`Prefetcher` downloads the next shards of a worker's plan in threads while it reads the
current one. A shuffled stream permutes row groups across the whole dataset, so with a cache
smaller than the dataset a shard may be downloaded more than once per epoch; for many epochs
over a dataset that fits on local disk, size the cache to the dataset.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from storage import StoredDataset
from storage.pages import map_private

# From S3 a shard is downloaded by curl (a presigned URL, one request, `-C -` to resume), as
# WebDataset reads object stores: against moto, two at once moved 450-530 MB/s using 0.6 s of CPU
# for 480 MB, where s3fs in this process moved 250-310 MB/s using 1.2-1.6 s, with the GIL
# (bench/RESULTS.md, issue 14). Without curl, or from another filesystem, fsspec in 64 MiB
# requests (against moto, 8 MiB requests moved 53 MB/s and 64 MiB ones 100-117 MB/s).
CURL = shutil.which("curl")
URL_SECONDS = 3600
CHUNK = 64 << 20
POLL_SECONDS = 0.005   # how often a reader looks whether its bytes have arrived


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[int]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh, mode)
        yield fh.fileno()


def signed_url(fs: Any, path: str) -> str | None:
    """A presigned HTTPS (or, for a local test server, HTTP) URL of an S3 object, for curl; None
    for other filesystems."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "s3" not in protocols or not hasattr(fs, "url"):
        return None
    return fs.url(path, expires=URL_SECONDS)


def _append_curl(url: str, part: Path, source: str) -> None:
    """The rest of the object after the bytes `part` holds (`-C -`), written in order by curl."""
    done = subprocess.run([CURL, "--silent", "--show-error", "--fail", "--retry", "3", "-C", "-",
                           "-o", str(part), url], capture_output=True, text=True)
    if done.returncode:
        raise OSError(f"{source}: download failed (curl exit {done.returncode}: "
                      f"{done.stderr.strip()[-300:]}); the part is kept and resumed next time")


class ShardCache:
    """Shards of one dataset version under `folder`, at most `max_bytes` of them (module doc)."""

    def __init__(self, folder: str | os.PathLike, store: StoredDataset, max_bytes: int):
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store, self.max_bytes = store, int(max_bytes)
        self.downloads = 0   # by this process: what the tests and the benchmark count
        self._reset_threads()

    def _reset_threads(self) -> None:
        """Downloads in flight in this process, by shard (a forked worker starts with none)."""
        self._pid, self._guard, self._inflight = os.getpid(), threading.Lock(), {}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_guard", "_inflight")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_threads()

    def _paths(self, shard: int) -> tuple[Path, Path, Path]:
        """(the cached shard, its download in progress, its lock file)."""
        entry = self.store.manifest["shards"][shard]
        basis = entry.get("sha256") or f"{self.store.uri}|{entry['path']}"
        name = hashlib.sha256(basis.encode()).hexdigest()[:32]
        return (self.folder / f"{name}.parquet", self.folder / f"{name}.part",
                self.folder / f"{name}.lock")

    @contextlib.contextmanager
    def open(self, shard: int) -> Iterator[str]:
        """The local path of a whole shard, downloaded if needed, not evicted while the block runs."""
        path, part, lock = self._paths(shard)
        with open(lock, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            if not path.exists():
                fcntl.flock(fh, fcntl.LOCK_EX)   # one process downloads; the others wait here
                if not path.exists():
                    self._download(shard, path, part)
                fcntl.flock(fh, fcntl.LOCK_SH)
            os.utime(path)   # recently used: evicted last
            yield str(path)

    def held(self, shard: int) -> bool:
        """Whether the shard is in the cache now, whole or arriving (not evicted)."""
        path, part, _ = self._paths(shard)
        return path.exists() or part.exists()

    def fetch(self, shard: int) -> None:
        with self.open(shard):
            pass

    def start(self, shard: int) -> Future:
        """`fetch(shard)` in a thread of this process, unless one is already under way."""
        if os.getpid() != self._pid:
            self._reset_threads()
        with self._guard:
            future = self._inflight.get(shard)
            if future is None or future.done():
                future = self._inflight[shard] = Future()
                threading.Thread(target=self._run, args=(shard, future), daemon=True,
                                 name="gdl-shard-download").start()
        return future

    def downloading(self, shard: int) -> bool:
        """Whether this process is downloading `shard` now (through `start`)."""
        future = self._inflight.get(shard) if os.getpid() == self._pid else None
        return future is not None and not future.done()

    def _run(self, shard: int, future: Future) -> None:
        try:
            self.fetch(shard)
            future.set_result(None)
        except BaseException as e:   # handed to whoever waits on it
            future.set_exception(e)

    def mapped(self, shard: int, end: int) -> np.ndarray:
        """A private mapping (storage/pages.py map_private) of the shard holding at least its bytes
        [0, end): the cached file, or its download in progress here or in another process once
        those bytes are in. Starts the download when it is not under way in this process."""
        path, part, _ = self._paths(shard)
        future = None
        while True:
            for candidate, need in ((path, 0), (part, end)):
                with contextlib.suppress(FileNotFoundError):
                    with open(candidate, "rb") as fh:
                        if os.fstat(fh.fileno()).st_size >= max(need, 1):
                            if candidate == path:
                                with contextlib.suppress(OSError):
                                    os.utime(path)   # recently used: evicted last
                            elif future is None:   # a part someone left must still be finished
                                self.start(shard)  # and checked (a no-op while it is under way)
                            return map_private(fh.fileno())
            if future is None:
                future = self.start(shard)
            elif future.done():
                future.result()   # a failed download's error; after a good one, the file is there
                future = None
            time.sleep(POLL_SECONDS)

    def _download(self, shard: int, path: Path, part: Path) -> None:
        """Download into `part` in order (resuming what a killed download left), check the sha256,
        rename into place; the caller holds the shard's lock exclusively."""
        source = self.store.shard_path(shard)
        entry = self.store.manifest["shards"][shard]
        with _locked(self.folder / ".evict.lock", fcntl.LOCK_EX):
            self._evict(room=int(entry.get("bytes") or 0))
        url = signed_url(self.store.fs, source) if CURL else None
        if url is None:
            self._append_fsspec(source, part)
        elif not (part.exists() and part.stat().st_size == entry.get("bytes")):
            _append_curl(url, part, source)
        digest, block = hashlib.sha256(), bytearray(1 << 20)   # one reused buffer: no fresh pages
        with open(part, "rb") as fh:
            while size := fh.readinto(block):
                digest.update(memoryview(block)[:size])
        if entry.get("sha256") and digest.hexdigest() != entry["sha256"]:
            part.unlink(missing_ok=True)
            raise ValueError(f"{source}: its bytes do not match the manifest's sha256; the shard was "
                             f"changed after commit: re-run the pipeline")
        with _locked(self.folder / ".evict.lock", fcntl.LOCK_EX):   # room first, then in place
            self._evict(room=part.stat().st_size)
            os.replace(part, path)
        self.downloads += 1

    def _append_fsspec(self, source: str, part: Path) -> None:
        """The rest of `source` after the bytes `part` holds, appended in CHUNK requests."""
        with open(part, "ab") as dst, self.store.fs.open(source, "rb", block_size=CHUNK) as src:
            src.seek(dst.tell())
            while chunk := src.read(CHUNK):
                dst.write(chunk)
                dst.flush()   # its size now tells readers these bytes are in

    def cached_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.parquet") if p.exists())

    def _evict(self, room: int) -> None:
        """Delete least recently used shards not in use until `room` more bytes fit in max_bytes
        (the caller holds the evict lock)."""
        files = []
        for p in self.folder.glob("*.parquet"):
            with contextlib.suppress(FileNotFoundError):
                stat = p.stat()
                files.append((stat.st_mtime_ns, stat.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files, key=lambda f: f[0]):
            if total + room <= self.max_bytes:
                break
            if self._delete_unused(p):
                total -= size

    @staticmethod
    def _delete_unused(path: Path) -> bool:
        with open(path.with_suffix(".lock"), "a+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False   # a reader holds it
            path.unlink(missing_ok=True)
            return True


class Prefetcher:
    """Downloads `shards` (in reading order) in `threads` threads, at most `ahead` beyond the one
    in use; several requests in flight keep a link busy while one waits on its first bytes
    (against moto, two 64 MiB-request downloads at once moved 325-362 MB/s, one 165-330 MB/s).
    A shard already being downloaded in this process (the reader's own, or a revisit) takes no
    thread."""

    def __init__(self, cache: ShardCache, shards: Sequence[int], ahead: int, threads: int = 3):
        # one entry per change of shard, as `reading` counts them (a shuffled plan may revisit one)
        self.cache = cache
        self.shards = [s for i, s in enumerate(shards) if i == 0 or s != shards[i - 1]]
        self._room = threading.Semaphore(ahead + 1)
        self._stop = threading.Event()
        self._next = iter(range(len(self.shards)))
        self._lock = threading.Lock()
        self._current: int | None = None
        for _ in range(max(1, min(threads, ahead + 1))):
            threading.Thread(target=self._run, daemon=True, name="gdl-shard-prefetch").start()

    def _run(self) -> None:
        while True:
            self._room.acquire()
            with self._lock:
                i = next(self._next, None)
            if i is None or self._stop.is_set():
                self._room.release()   # let the other threads see the end too
                return
            if self.cache.downloading(self.shards[i]):
                continue   # under way already (the reader's, or a revisit): no thread to spend on it
            with contextlib.suppress(Exception):   # the reader's own wait reports any failure
                self.cache.start(self.shards[i]).result()

    def reading(self, shard: int) -> None:
        """The reader reads `shard`; when that is a new one, one more may be fetched ahead."""
        if self._current is not None and shard != self._current:
            self._room.release()
        self._current = shard

    def close(self) -> None:
        self._stop.set()
        self._room.release()
