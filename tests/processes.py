"""Helpers for tests that check which processes are left: pids a stage reports, liveness.

Other processes cannot signal the test, so these poll (like ``harness.wait_until``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from conftest import WAIT_S


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_gone(pids: list[int]) -> None:
    """Poll until none of ``pids`` runs."""
    deadline = time.monotonic() + WAIT_S
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running: {[p for p in pids if alive(p)]}")
        time.sleep(0.02)


def kill_leftovers(pids: list[int]) -> None:
    """Clean up after a failed test: kill what is still ours (checked by its command)."""
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"sleep" in cmdline or b"stagewidget.engine.worker" in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def read_pids(path: Path) -> list[int]:
    """The pids a stage wrote to ``path`` (it writes them atomically), once it has."""
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"the stage never wrote {path}")
        time.sleep(0.02)
    return [int(pid) for pid in path.read_text().split()]


def write_pids(path: str, *pids: int) -> None:
    """In a stage: write ``pids`` to ``path`` atomically, for ``read_pids``."""
    with open(path + ".tmp", "w") as out:
        out.write(" ".join(map(str, pids)))
    os.replace(path + ".tmp", path)
