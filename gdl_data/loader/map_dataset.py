"""`GeometryDataset`: random access by index, for datasets that fit in memory.

Parquet cannot decode one row of a row group alone, so a miss decodes the row group that holds
the index and keeps it: decoded row groups stay in a per-process LRU bounded by `cache_bytes`.
When the dataset fits in that budget, every epoch after the first is served from memory. When
it does not, random access decodes a row group per sample: stream it with GeometryStream.
"""
from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from typing import Any, Callable, Sequence

from torch.utils.data import Dataset

from gdl_data.loader.row_groups import RowGroup, RowGroupSource, check_int


def sample_nbytes(sample: dict[str, Any]) -> int:
    return sum(getattr(v, "nbytes", 0) for v in sample.values())


class GeometryDataset(Dataset):
    """A stored dataset as a map-style torch Dataset: `len()`, `[i]` -> dict of tensors.

    Args:
        uri: dataset folder or fsspec URI.
        version: dataset version; None: the current one when the dataset is created (pinned).
        columns: column names to read (None: all).
        transform: optional `f(sample) -> sample` applied on each access.
        cache_bytes: decoded bytes kept per process (default 2 GiB); each DataLoader worker keeps
            its own.
        cache_dir: keep decoded row groups as memory-mapped Arrow files in this local folder
            (decoded_cache.py), shared by workers and processes. Default None.

    Sample `i` is row `i` of `open_dataset(uri, version)`, with numeric arrays as tensors and
    strings unchanged. The tensors are the cache's: a transform must return new tensors rather
    than change them in place (as PyG transforms do), or later epochs see the change.
    """

    def __init__(self, uri: str, version: int | None = None, columns: Sequence[str] | None = None,
                 transform: Callable[[dict[str, Any]], Any] | None = None, *,
                 cache_bytes: int = 2 << 30, cache_dir: str | os.PathLike | None = None):
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be a callable sample -> sample; got {transform!r}")
        self.source = RowGroupSource(uri, version, columns, cache_dir)
        self.transform = transform
        self.cache_bytes = check_int("cache_bytes", cache_bytes, 0)
        self._starts = [g.start for g in self.source.groups]
        self._cache: OrderedDict[RowGroup, tuple[list[dict[str, Any]], int]] = OrderedDict()
        self._cached_bytes = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)   # workers start with an empty cache of their own
        state.update(_cache=OrderedDict(), _cached_bytes=0)
        return state

    def __len__(self) -> int:
        return len(self.source)

    def _group_samples(self, group: RowGroup) -> list[dict[str, Any]]:
        hit = self._cache.get(group)
        if hit is not None:
            self._cache.move_to_end(group)
            return hit[0]
        samples = self.source.read(group)
        nbytes = sum(sample_nbytes(s) for s in samples)
        self._cache[group] = (samples, nbytes)
        self._cached_bytes += nbytes
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, (_, freed) = self._cache.popitem(last=False)
            self._cached_bytes -= freed
        return samples

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sample {index} out of range for a dataset of {n} samples")
        index %= n
        group = self.source.groups[bisect.bisect_right(self._starts, index) - 1]
        sample = dict(self._group_samples(group)[index - group.start])
        return sample if self.transform is None else self.transform(sample)
