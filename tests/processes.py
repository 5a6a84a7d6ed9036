"""Shared by tests that stop runs with signals: which processes of a group are still alive."""
from __future__ import annotations

import os


def live_members(pgid: int) -> list[int]:
    """Processes of a process group still running (zombies awaiting a reaper excluded)."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(pid))
    return alive


def assert_sigterm_stops(proc, group: int, dataset) -> None:
    """SIGTERM to `proc` (a `gdl preprocess` mid-run): it leaves within 10 s with status 130 and
    says so, nothing of process group `group` is left, the lock is released and no version was
    published."""
    import signal
    import time

    from storage import list_versions
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    output = proc.communicate(timeout=30)[0].decode()
    assert time.monotonic() - start < 10 and proc.returncode == 130, output[-2000:]
    assert "stopped by SIGTERM" in output
    time.sleep(0.5)
    assert live_members(group) == []                        # workers gone with it
    assert not (dataset / "_lock.json").exists() and list_versions(str(dataset)) == []
