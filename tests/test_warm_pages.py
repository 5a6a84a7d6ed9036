"""flows/warm_pages.py: which pages a fork copied, and writing pages ahead.

Each check runs in a real fork of this process; the child reports a line down a pipe. Fault
counts are the kernel's (getrusage's minor faults)."""
import os
import resource
import sys

import numpy as np
import pytest

from flows import warm_pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.access("/proc/self/pagemap", os.R_OK),
                                reason="needs Linux's /proc/self/pagemap")
PAGES = 200


def _in_fork(check) -> str:
    """`check()`'s return value (a str), computed in a forked child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.write(write, check().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return out


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.fixture()
def buffer():
    """PAGES resident pages of random bytes, and their page numbers (the first whole one on)."""
    data = np.random.default_rng(0).integers(0, 256, (PAGES + 1) * warm_pages.PAGE, dtype=np.uint8)
    first = -(-data.ctypes.data // warm_pages.PAGE)
    return data, np.arange(first, first + PAGES - 1)


def test_a_fork_finds_exactly_the_pages_it_wrote_among_the_parents_resident_ones(buffer):
    data, pages = buffer
    resident = warm_pages.resident()
    assert np.isin(pages, resident).all()

    def child():
        offset = (pages[0] * warm_pages.PAGE) - data.ctypes.data
        data[offset + 40 * warm_pages.PAGE: offset + 60 * warm_pages.PAGE: warm_pages.PAGE] += 1   # pages 40-59
        found = set(warm_pages.copied(resident).tolist())
        return " ".join("1" if p in found else "0" for p in pages.tolist())
    marks = _in_fork(child).split()
    assert marks[40:60] == ["1"] * 20
    assert marks[:40] == ["0"] * 40 and marks[60:] == ["0"] * (len(pages) - 60)


@pytest.mark.parametrize("ahead", [False, True])
def test_pages_written_ahead_are_written_later_without_faults_and_keep_their_bytes(buffer, ahead):
    data, pages = buffer
    before = data.tobytes()

    def child():
        written = warm_pages.write_ahead(pages, stop=lambda: False) if ahead else 0
        same = data.tobytes() == before
        start = (pages[0] * warm_pages.PAGE) - data.ctypes.data
        faults = _faults()
        data[start: start + len(pages) * warm_pages.PAGE: warm_pages.PAGE] ^= 0xFF
        return f"{written} {_faults() - faults} {same}"
    written, faults, same = _in_fork(child).split()
    assert same == "True"
    if ahead:
        assert int(written) == len(pages) and int(faults) <= len(pages) // 10
    else:
        assert int(faults) >= len(pages) * 9 // 10          # the control: one copy a page


def test_writing_ahead_stops_when_asked_and_skips_what_is_not_mapped(buffer, monkeypatch):
    _, pages = buffer
    monkeypatch.setattr(warm_pages, "CHUNK_PAGES", 50)       # the buffer holds several chunks
    unmapped = np.arange(1, 4)                               # the first pages of the address space
    asked = _in_fork(lambda: str(warm_pages.write_ahead(np.concatenate([unmapped, pages]), stop=lambda: True)))
    assert int(asked) == 50                                  # one chunk, then it looked and stopped
    never = _in_fork(lambda: str(warm_pages.write_ahead(np.concatenate([unmapped, pages]), stop=lambda: False)))
    assert int(never) == len(pages)
    assert _in_fork(lambda: str(warm_pages.write_ahead(unmapped, stop=lambda: False))) == "0"


def test_a_saved_list_loads_back_capped_and_a_missing_or_torn_one_is_empty(tmp_path):
    path = str(tmp_path / "warm.pages")
    assert len(warm_pages.load(path)) == 0
    warm_pages.save(path, np.arange(warm_pages.MAX_PAGES + 10, dtype=np.int64))
    assert (warm_pages.load(path) == np.arange(warm_pages.MAX_PAGES)).all()
    with open(path, "r+b") as fh:
        fh.truncate(13)                                      # not a whole number of entries
    assert len(warm_pages.load(path)) == 0
