"""Zero-copy reading of plain Parquet pages: where each binary value of a column chunk lies in the file.

pyarrow decodes a binary column by copying every value into a fresh buffer: for 1 MB meshes that
copy was most of a training epoch's time with the shards in the page cache (bench/RESULTS.md,
"Loader ... (issue 14)"). A column chunk written uncompressed, without a dictionary and without
nulls holds each value's bytes as they are, in row order (Parquet format spec, "Data Pages",
"Encodings"): with PLAIN encoding each after a 4-byte length, with DELTA_LENGTH_BYTE_ARRAY (what
storage/aligned.py writes) all lengths first, then all values back to back up to the page's end.
So the values can be used in place, as views of a memory-mapped file: this module finds them.
Any other chunk (compressed, dictionary, nulls, nested) is left to pyarrow (`binary_spans`
returns None), so a reader always has a correct path.

Page headers are Thrift compact-protocol structs (Thrift's "compact protocol" spec): read here
with a few dozen lines rather than a Thrift dependency, skipping every field not needed.
"""
from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import pyarrow.parquet as pq

# Thrift compact types (field header low nibble)
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
DATA_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 2, 3
PLAIN, DELTA_LENGTH_BYTE_ARRAY = 0, 6


class _Compact:
    """A cursor over Thrift compact-protocol bytes (`buf`: a uint8 array or bytes)."""

    def __init__(self, buf: Any, pos: int):
        self.buf, self.pos = memoryview(buf).cast("B"), pos   # indexing gives Python ints

    def varint(self) -> int:
        shift = value = 0
        while True:
            b = self.buf[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("malformed Thrift varint")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def fields(self):
        """(field id, type) of each field of the struct at the cursor, up to its stop byte; the
        caller reads the value or calls skip(type)."""
        last = 0
        while True:
            b = self.buf[self.pos]
            self.pos += 1
            if b == 0:
                return
            delta, kind = b >> 4, b & 0x0F
            last = last + delta if delta else self.zigzag()
            yield last, kind

    def value(self, kind: int) -> Any:
        if kind in (_TRUE, _FALSE):
            return kind == _TRUE
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        self.skip(kind)
        return None

    def skip(self, kind: int) -> None:
        if kind in (_TRUE, _FALSE):
            return
        if kind == _BYTE:
            self.pos += 1
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.pos += 8
        elif kind == _BINARY:
            size = self.varint()   # not `self.pos += self.varint()`: that adds to the old pos
            self.pos += size
        elif kind in (_LIST, _SET):
            head = self.buf[self.pos]
            self.pos += 1
            size, element = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):
                self.pos += 1 if element in (_TRUE, _FALSE) else 0
                if element not in (_TRUE, _FALSE):
                    self.skip(element)
        elif kind == _MAP:
            size = self.varint()
            if size:
                kinds = self.buf[self.pos]
                self.pos += 1
                for _ in range(size):
                    self.skip(kinds >> 4)
                    self.skip(kinds & 0x0F)
        elif kind == _STRUCT:
            for _, k in self.fields():
                self.skip(k)
        else:
            raise ValueError(f"malformed Thrift: unknown type {kind}")

    def struct(self) -> dict[int, Any]:
        """The scalar fields of the struct at the cursor (id -> value), nested structs as dicts."""
        out: dict[int, Any] = {}
        for fid, kind in self.fields():
            out[fid] = self.struct() if kind == _STRUCT else self.value(kind)
        return out


def page_header(buf: Any, pos: int) -> tuple[dict[int, Any], int]:
    """The PageHeader at `pos` (field ids as in parquet.thrift) and where its page data begins."""
    cursor = _Compact(buf, pos)
    header = cursor.struct()
    return header, cursor.pos


def _all_defined(buf: np.ndarray, start: int, end: int, count: int) -> bool:
    """True when the RLE/bit-packed hybrid definition levels in buf[start:end] (bit width 1) are
    `count` ones as RLE runs: a page without nulls. Anything else (nulls, bit-packed runs) -> False."""
    cursor, seen = _Compact(buf, start), 0
    while cursor.pos < end and seen < count:
        head = cursor.varint()
        if head & 1 or cursor.buf[cursor.pos] != 1:
            return False
        cursor.pos += 1
        seen += head >> 1
    return seen == count


def binary_spans(buf: np.ndarray, chunk: pq.ColumnChunkMetaData, max_def: int,
                 lengths: np.ndarray) -> np.ndarray | None:
    """(offset, length) in `buf` (the whole file) of each value of a flat binary column chunk, as
    a (rows, 2) int64 array; None when the chunk is not uncompressed, PLAIN or
    DELTA_LENGTH_BYTE_ARRAY, without nulls. `lengths`: each row's expected byte length (from its
    shape): a PLAIN value of another length, or a DELTA_LENGTH chunk whose header disagrees, is
    an error, as numpy's reshape of a wrong-sized value would be."""
    if (chunk.physical_type != "BYTE_ARRAY" or chunk.compression != "UNCOMPRESSED"
            or chunk.has_dictionary_page or max_def > 1):
        return None
    rows = len(lengths)
    spans = np.empty((rows, 2), np.int64)
    pos, end, row = chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size, 0
    while pos < end:
        header, data = page_header(buf, pos)
        size = header.get(3)
        if size is None or data + size > buf.size:
            raise ValueError("malformed Parquet page header")
        pos = data + size
        found = _page_values(buf, header, data, max_def)
        if found is None:
            return None
        data, count, encoding = found
        if row + count > rows:
            raise ValueError("malformed Parquet column chunk: more values than rows")
        fill = _plain_values if encoding == PLAIN else _delta_length_values
        fill(buf, data, pos, lengths[row:row + count], spans[row:row + count])
        row += count
    return spans if row == rows else None


def _page_values(buf: np.ndarray, header: dict[int, Any], data: int, max_def: int) -> tuple[int, int, int] | None:
    """(where the values begin, how many, their encoding) of a data page without nulls whose
    data begins at `data`; None for any other page."""
    if header.get(1) == DATA_PAGE and 5 in header:
        page = header[5]
        count, encoding = page.get(1, 0), page.get(2)
        if max_def:
            levels = int.from_bytes(memoryview(buf)[data:data + 4], "little")
            if not _all_defined(buf, data + 4, data + 4 + levels, count):
                return None
            data += 4 + levels
    elif header.get(1) == DATA_PAGE_V2 and 8 in header:
        page = header[8]
        if page.get(2, 0):   # nulls
            return None
        count, encoding = page.get(1, 0), page.get(4)
        data += page.get(5, 0) + page.get(6, 0)
    else:
        return None   # an index or dictionary page: not this simple layout
    return (data, count, encoding) if encoding in (PLAIN, DELTA_LENGTH_BYTE_ARRAY) else None


def _plain_values(buf: np.ndarray, at: int, end: int, lengths: np.ndarray, spans: np.ndarray) -> None:
    """Fill spans with the PLAIN byte arrays from `at` on: each a 4-byte length, then the bytes."""
    view = memoryview(buf).cast("B")
    for i, expected in enumerate(lengths.tolist()):
        length = int.from_bytes(view[at:at + 4], "little")
        if length != expected or at + 4 + length > end:
            raise ValueError(f"a stored value holds {length} bytes where its shape says {expected}")
        spans[i] = (at + 4, length)
        at += 4 + length


def _delta_length_values(buf: np.ndarray, at: int, end: int, lengths: np.ndarray, spans: np.ndarray) -> None:
    """Fill spans for DELTA_LENGTH_BYTE_ARRAY values from `at` on: the lengths, delta-encoded
    (DELTA_BINARY_PACKED), then every value's bytes back to back up to the page's end. Only the
    lengths' header is decoded (value count, first length); the bytes end where the page does."""
    cursor = _Compact(buf, at)
    cursor.varint(), cursor.varint()   # block size, miniblocks per block
    count, first = cursor.varint(), cursor.zigzag()
    total = int(lengths.sum())
    if count != len(lengths) or (count and first != lengths[0]) or end - total < cursor.pos:
        raise ValueError("a stored column's value lengths disagree with its shapes")
    spans[:, 1] = lengths
    spans[:, 0] = end - total + np.cumsum(lengths) - lengths


def map_private(source: str | int) -> np.ndarray:
    """A whole file (a path, or an open file descriptor) as a writable uint8 array over a private
    (copy-on-write) memory map: views of it read the page cache without a copy, and a write to one
    changes neither the file nor any other mapping of it (each read maps afresh, so an epoch never
    sees the last one's edits). The mapping outlives the file's name: a cached shard evicted while
    read stays readable."""
    import mmap
    if isinstance(source, int):
        return np.frombuffer(mmap.mmap(source, 0, access=mmap.ACCESS_COPY), dtype=np.uint8)
    with open(source, "rb") as fh:
        return map_private(fh.fileno())


def group_end(footer: pq.FileMetaData, group: int) -> int:
    """The file offset just past row group `group`'s column chunks: a file whose first bytes up to
    there have arrived can serve that group (with the footer known from elsewhere)."""
    chunks = footer.row_group(group)
    return max((chunks.column(j).dictionary_page_offset if chunks.column(j).has_dictionary_page
                else chunks.column(j).data_page_offset) + chunks.column(j).total_compressed_size
               for j in range(chunks.num_columns))


def span_arrays(buf: np.ndarray, spans: np.ndarray, dims: np.ndarray, dtype: np.dtype) -> list[np.ndarray]:
    """Each span of `buf` as an array of `dtype` and its row of `dims`: a view where the bytes are
    aligned for the dtype, else a copy (storage/aligned.py writes shards where all are aligned;
    in older ones a PLAIN value lies wherever the 4-byte lengths and page headers put it)."""
    out = []
    for (at, length), shape in zip(spans.tolist(), dims.tolist()):
        raw = buf[at:at + length]
        if at % dtype.alignment:
            raw = raw.copy()   # a fresh buffer is aligned for every dtype
        out.append(raw.view(dtype).reshape(shape))
    return out


PAGEMAP_PRESENT, PAGEMAP_FILE = 1 << 63, 1 << 61   # /proc/PID/pagemap entry bits (kernel docs)


def restore_written(buf: np.ndarray) -> bool:
    """Put back the file's bytes in every page of a private mapping (`map_private`) that this
    process wrote to: /proc/self/pagemap tells which pages are private copies (present, not file
    pages), MADV_DONTNEED drops them, and the next read of those pages comes from the file again.
    False when the page map cannot be read (then the mapping must not be reused)."""
    import mmap
    page = mmap.PAGESIZE
    first, count = buf.ctypes.data // page, (buf.size + page - 1) // page
    try:
        with open("/proc/self/pagemap", "rb") as fh:
            entries = np.frombuffer(os.pread(fh.fileno(), count * 8, first * 8), "<u8")
    except OSError:
        return False
    if entries.size != count:
        return False
    written = np.flatnonzero((entries & np.uint64(PAGEMAP_PRESENT | PAGEMAP_FILE)) == np.uint64(PAGEMAP_PRESENT))
    if written.size:
        mapping = buf.base.obj if isinstance(buf.base, memoryview) else buf.base
        lo, hi = int(written[0]) * page, min(int(written[-1] + 1) * page, buf.size)
        mapping.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    return True


class MappingCache:
    """Private mappings of shards kept by one process, so that a later epoch finds the page
    tables filled instead of faulting every page in again (a fresh mapping's faults cost 5-17 µs
    per 1 MB sample on a quiet machine and 80-210 µs on a busy one, bench/RESULTS.md issue 14). A
    kept mapping is handed out again only when nothing read from it is still alive (its reference
    count: every view of it holds one) and after `restore_written` put back any page a consumer
    wrote to, so a sample never sees another's or an earlier epoch's edits; otherwise the file is
    mapped afresh. Keyed by row group (two groups of a shard are often alive at once in a shuffle
    window); at most `limit` are kept (least recently used dropped): 256 groups of up to 64 MiB.
    Only the pages of groups read are ever mapped in, and the kernel may still reclaim them."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self._kept: OrderedDict[Any, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()   # reading threads of one process may share it

    def get(self, key: Any, need: int, open_mapping: Callable[[], np.ndarray],
            current: Callable[[], bool] = lambda: True) -> np.ndarray:
        """The kept mapping for `key` if reusable, at least `need` bytes long and `current()` (e.g.
        its file is still in a cache), else open_mapping()."""
        with self._lock:   # a kept mapping goes to one reader; opening one may wait, so unlocked
            kept = self._kept.pop(key, None)
        # 2 references: `kept` and getrefcount's argument; any view of it alive adds one
        if kept is None or kept.size < need or sys.getrefcount(kept) > 2 or not current() \
                or not restore_written(kept):
            kept = open_mapping()
        with self._lock:
            self._kept[key] = kept
            while len(self._kept) > self.limit:
                self._kept.popitem(last=False)
        return kept
