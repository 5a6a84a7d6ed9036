"""`StreamLoader`: a GeometryStream's batches read by threads of the training process.

    loader = StreamLoader(stream, batch_size=16, num_workers=2)   # collate_graphs by default
    for epoch in range(epochs):
        stream.set_epoch(epoch)
        for batch in loader:
            ...

It yields exactly the batches, in exactly the order, of
`DataLoader(stream, batch_size, num_workers=num_workers, collate_fn=collate_fn, drop_last=...)`:
thread w reads what DataLoader worker w would (GeometryStream.worker_samples: the same plan,
the same shuffle), batches and collates its own samples, and batches are taken from the threads
in turn, skipping a thread that has finished, as DataLoader takes them from its workers
(tests/test_stream_loader.py compares the two). Mid-epoch resume (`record`, `state_dict`) works
as with a DataLoader.

Why threads and not worker processes: the stream reads array columns in place (views of the
shard's memory map, storage/pages.py), so reading costs little CPU, and most of a DataLoader
worker's time goes into moving each batch to the main process: a fresh shared-memory segment
per batch, every page of it faulted in and zeroed, filled, its descriptor passed over a socket,
mapped and faulted again by the main process (bench/RESULTS.md, issue 14). Threads hand the
batch over as it is; `torch.cat` and the page copies release the GIL, so `num_workers` threads
collate in parallel on as many cores. FFCV and DALI feed training the same way.

When to keep DataLoader's processes: a `transform` (or `collate_fn`) that spends its time in
Python code holding the GIL runs one thread at a time here, where processes run side by side.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, Sequence

from gdl_data.loader.collate import collate_graphs
from gdl_data.loader.device import pin
from gdl_data.loader.row_groups import check_int
from gdl_data.loader.stream_dataset import GeometryStream

_DONE = object()


class StreamLoader:
    """Batches of `stream`, read, batched and collated by `num_workers` threads.

    Args:
        stream: the GeometryStream to read; call its `set_epoch` before each epoch.
        batch_size: samples per batch (the last batch of each thread may be smaller).
        num_workers: reading threads (0: read in the calling thread, as DataLoader's 0).
        collate_fn: list of samples -> batch (default collate_graphs).
        drop_last: drop each thread's last, smaller batch (as DataLoader does per worker).
        prefetch_factor: batches each thread may hold ready ahead of the consumer (default 2).
        pin_memory: pin each batch (device.pin) in its thread, for non-blocking copies to CUDA.
    """

    def __init__(self, stream: GeometryStream, batch_size: int = 1, num_workers: int = 0,
                 collate_fn: Callable[[Sequence[Any]], Any] = collate_graphs, *, drop_last: bool = False,
                 prefetch_factor: int = 2, pin_memory: bool = False):
        if not isinstance(stream, GeometryStream):
            raise TypeError(f"StreamLoader reads a GeometryStream; got {type(stream).__name__} "
                            f"(use torch's DataLoader for other datasets)")
        self.stream = stream
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.num_workers = check_int("num_workers", num_workers, 0)
        self.prefetch_factor = check_int("prefetch_factor", prefetch_factor, 1)
        self.collate_fn = collate_fn
        self.drop_last = bool(drop_last)
        self.pin_memory = bool(pin_memory)

    def __len__(self) -> int:
        """Batches the next iteration yields: each thread batches its own share (partition.py)."""
        threads = max(1, self.num_workers)
        self.stream.progress.start(threads)   # as iterating would: a resumed plan re-shared first
        consumed = self.stream.progress.consumed.numpy()
        batches = 0
        for worker in range(threads):
            rows = sum(int((~consumed[s.group.start + s.lo:s.group.start + s.hi]).sum())
                       for s in self.stream.slices(worker, threads))
            batches += rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)
        return batches

    def _batches(self, worker: int, num_workers: int) -> Iterator[Any]:
        """What DataLoader worker `worker` would send: its samples in batches, collated."""
        batch: list[Any] = []
        for sample in self.stream.worker_samples(worker, num_workers):
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self._finish(batch)
                batch = []
        if batch and not self.drop_last:
            yield self._finish(batch)

    def _finish(self, batch: list[Any]) -> Any:
        out = self.collate_fn(batch)
        return pin(out) if self.pin_memory else out

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0:
            yield from self._batches(0, 1)
            return
        self.stream.progress.start(self.num_workers)   # once, before the threads plan
        stop = threading.Event()
        queues = [queue.Queue(self.prefetch_factor) for _ in range(self.num_workers)]
        threads = [threading.Thread(target=self._run, args=(w, q, stop), daemon=True,
                                    name=f"gdl-stream-loader-{w}") for w, q in enumerate(queues)]
        for t in threads:
            t.start()
        try:
            yield from _round_robin(queues)
        finally:
            stop.set()
            for q in queues:   # unblock a thread waiting to put
                while not q.empty():
                    q.get_nowait()
            for t in threads:
                t.join()

    def _run(self, worker: int, out: queue.Queue, stop: threading.Event) -> None:
        """Thread body: batches into `out`, then _DONE (or the exception raised while reading)."""
        batches = self._batches(worker, self.num_workers)
        try:
            for batch in batches:
                if not _put(out, batch, stop):
                    return
            _put(out, _DONE, stop)
        except BaseException as exc:   # handed to the consumer, which raises it
            _put(out, exc, stop)
        finally:
            batches.close()   # ends the stream's shard prefetcher


def _put(out: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _round_robin(queues: list[queue.Queue]) -> Iterator[Any]:
    """One batch from each thread in turn, skipping threads that have finished (DataLoader's order)."""
    active = list(queues)
    while active:
        for q in list(active):
            item = q.get()
            if item is _DONE:
                active.remove(q)
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
