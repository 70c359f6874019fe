"""Which process owns a record (``host:pid``), and whether that process still lives.

Shared by the run history and the status service's registry: a record nobody writes
any more reads as lost once its owner is known to be gone.
"""

from __future__ import annotations

import functools
import os
import socket

__all__ = ["default_owner", "owner_alive", "process_started"]


def default_owner() -> str:
    """This process, as run records name it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str, host: str, started: str | None = None) -> bool:
    """True if ``owner`` (``host:pid``) is a live process on ``host``, this machine.

    Only a process on this host can be checked (``kill(pid, 0)``; a zombie counts as
    gone); any other owner gives False. Given ``started`` (the owner's
    ``process_started()`` when it wrote the record), a pid reused by a newer process
    reads as gone; without it, a reused pid reads as alive.
    """
    owner_host, _, pid_text = owner.rpartition(":")
    if owner_host != host or not (pid_text.isascii() and pid_text.isdigit()):
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return started is None or started == process_started(pid)
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # it exists, under another user
    except (OSError, OverflowError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: kill() said it exists
        return True
    if fields[:1] in ([b"Z"], [b"X"]):
        return False
    return started is None or started == _start_ticks(fields)


@functools.lru_cache(maxsize=4)
def _cached_start(pid: int) -> str | None:
    return _read_start(pid)  # a process's start never changes; keyed by pid for fork()


def process_started(pid: int | None = None) -> str | None:
    """When process ``pid`` (default: this one) started, as an opaque token, or None.

    The start time in clock ticks since boot, from ``/proc`` (Linux): with the pid it
    names one process, even once the pid is reused. None where there is no ``/proc``.
    """
    if pid is None or pid == os.getpid():
        return _cached_start(os.getpid())
    return _read_start(pid)


def _read_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return _start_ticks(fh.read().rpartition(b")")[2].split())
    except OSError:
        return None


def _start_ticks(fields: list[bytes]) -> str | None:
    # fields after "(comm)": state is field 3 of stat(5), starttime field 22 -> index 19
    return fields[19].decode() if len(fields) > 19 else None
