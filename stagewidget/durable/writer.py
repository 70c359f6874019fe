"""The process's one history writer: the latest snapshot of each run, written off the
hot path from a thread of its own.

A followed run is sampled by the writer itself (its ``sample()``, about once every
``WRITE_INTERVAL_S``), so recording asks nothing of the delivery thread: a run nobody
watches stays unobserved. In the same rounds, while it follows unfinished runs, the
writer reads the database's pending Cancels (``cancels``: asked for by another process,
the Jupyter extension) and cancels those of its runs that are there. Each run is
written at most once every ``WRITE_INTERVAL_S`` and its final state (offered when it
ends) always. Nothing a run does waits for the database: one that cannot be written
(read-only, full disk, damaged) is logged once on the ``stagewidget.history`` logger
and the runs go on unrecorded. Writing a run's end also prunes its pipeline's oldest
finished runs beyond ``retention.history_keep()`` (once they are ``slack()`` over it).
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..status import RunStatus
from .cancels import clear_cancels, pending_cancels
from .db import transaction
from .records import open_db, write_run
from .retention import history_keep, prune_runs, slack

__all__ = ["EXIT_FLUSH_S", "HistoryWriter", "LINGER_S", "WRITE_INTERVAL_S", "flush",
           "warn_once", "writer"]

_log = logging.getLogger("stagewidget.history")

WRITE_INTERVAL_S = 1.0  # a running run is written at most this often
LINGER_S = 1.0  # an idle writer thread waits this long for new work before it ends
# Runs due at different moments are taken in rounds at least this far apart (a final
# state or a flush wakes the writer at once): a thousand live runs cost ten rounds a
# second, not a wake-up (and a scan of every run) per run.
ROUND_S = 0.1
BUSY_WARN_AFTER = 3  # busy refusals in a row before the writer says so (once)
EXIT_FLUSH_S = 5.0  # at exit, the writer gets this long to write what is left


@dataclass(slots=True, eq=False)
class _Entry:
    path: Path
    status: RunStatus
    fingerprints: tuple[str | None, ...]
    written_at: float  # monotonic time of the last write (or try, or the first offer)
    dirty: bool = True
    # the run's status now, None once the run is gone (a followed run; else None)
    sample: Callable[[], RunStatus | None] | None = None
    # cancels the run when another process asks (a followed run; else None)
    cancel: Callable[[], object] | None = None


class HistoryWriter:
    """Writes the latest snapshot of each run; one per process, its thread started lazily.

    The thread (``stagewidget-history``, a daemon) is started by ``follow()`` when a
    run is launched (in the launching thread), ends once nothing was left to write or
    follow for ``LINGER_S``, and starts again with the next run; at exit, what is left is written
    (``EXIT_FLUSH_S`` at most). Its condition guards only the pending entries: it is
    never held while writing to a database or calling out.
    """

    def __init__(self, interval_s: float = WRITE_INTERVAL_S,
                 clock: Any = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._pending: dict[str, _Entry] = {}
        self._thread: threading.Thread | None = None
        self._urgent = 0  # flush() calls waiting: write now, ignoring the interval
        self._writing = 0  # entries being written by the thread right now
        self._broken: set[Path] = set()  # databases given up on (logged once)
        self._finals: set[str] = set()  # runs whose final state waits to be written
        self.finals_written = 0  # final states written so far (ETAs read again after one)
        self._warned: set[str] = set()
        self._at_exit = False
        self.pid = os.getpid()
        # only the writer thread uses these (one thread at a time: a new one starts once
        # the last has stopped touching them)
        self._connections: dict[Path, sqlite3.Connection] = {}
        self._busy: dict[Path, int] = {}  # writes refused in a row as busy, per database

    def offer(self, path: Path, status: RunStatus, fingerprints: tuple[str | None, ...]
              ) -> None:
        """Keep ``status`` as its run's latest snapshot, to be written soon. Never blocks."""
        with self._cond:
            if path in self._broken:
                return
            entry = self._pending.get(status.run_id)
            if entry is None:  # first written a second from now: a short run only ends
                entry = self._pending[status.run_id] = _Entry(path, status, fingerprints,
                                                              written_at=self._clock())
            else:
                entry.status, entry.dirty = status, True
            if status.state.terminal:
                self._finals.add(status.run_id)
            if self._thread is None:
                self._start_locked()
            elif status.state.terminal or \
                    self._clock() - entry.written_at >= self._interval_s:
                self._cond.notify_all()

    def follow(self, path: Path, status: RunStatus, fingerprints: tuple[str | None, ...],
               sample: Callable[[], RunStatus | None],
               cancel: Callable[[], object] | None = None) -> None:
        """Record ``status`` (first written a second from now), then ``sample()`` about
        once a second until a final state is offered or ``sample()`` gives None; call
        ``cancel()`` once a Cancel of the run is found in the database. Never blocks;
        ``sample`` and ``cancel`` are called from the writer's thread, without its lock."""
        with self._cond:
            if path in self._broken:
                return
            self._pending[status.run_id] = _Entry(path, status, fingerprints,
                                                  written_at=self._clock(), sample=sample,
                                                  cancel=cancel)
            if self._thread is None:
                self._start_locked()
            self._cond.notify_all()

    def flush(self, timeout_s: float, *, finished_only: bool = False) -> bool:
        """Write every pending snapshot now; block until written (True) or ``timeout_s``.

        Followed runs are sampled first, so what is written is their state now. With
        ``finished_only``, return as soon as every finished run is written (at once when
        none waits), so the next run's expected durations include them.
        """
        if not finished_only:
            self._sample_followed(every=True)
        with self._cond:
            if finished_only and not self._finals:
                return True
            self._urgent += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(self._idle_locked, timeout_s)
            finally:
                self._urgent -= 1

    def warn_once(self, key: str, message: str, *args: Any) -> None:
        """Log ``message`` as a warning, once per process for each ``key``."""
        with self._cond:
            first = key not in self._warned
            self._warned.add(key)
        if first:
            _log.warning(message, *args)

    # -- the writer thread ----------------------------------------------------------------
    def _idle_locked(self) -> bool:
        return not self._writing and not any(e.dirty for e in self._pending.values())

    def _start_locked(self) -> None:
        if not self._at_exit:
            self._at_exit = True
            atexit.register(_flush_at_exit)  # once per process (a forked child inherits it)
        self._thread = threading.Thread(target=self._loop, name="stagewidget-history",
                                        daemon=True)
        self._thread.start()

    def _due_locked(self) -> tuple[list[tuple[_Entry, RunStatus]], float | None]:
        """(entries to write now with their snapshot, seconds until the next is due or
        the next followed run is to be sampled: 0 when one is to be sampled now)."""
        now, due, wait = self._clock(), [], None
        for entry in self._pending.values():
            left = entry.written_at + self._interval_s - now
            if not entry.dirty:
                if entry.sample is not None:  # followed: sampled when its interval is over
                    left = max(left, 0.0)
                    wait = left if wait is None else min(wait, left)
                continue
            if left <= 0 or self._urgent or entry.status.state.terminal:
                due.append((entry, entry.status))
            else:
                wait = left if wait is None else min(wait, left)
        return due, wait

    def _sample_followed(self, *, every: bool = False) -> None:
        """Take a fresh snapshot of each followed run whose interval is over (``every``:
        of each one), outside the lock: ``sample()`` takes the run's own lock."""
        with self._cond:
            now = self._clock()
            todo = [(entry, entry.sample) for entry in self._pending.values()
                    if entry.sample is not None and not entry.status.state.terminal
                    and (every or now - entry.written_at >= self._interval_s)]
        for entry, sample in todo:
            try:
                status = sample()
            except Exception as err:  # pragma: no cover - status() does not raise
                status = None
                self.warn_once(f"sample:{entry.status.run_id}", "cannot sample run %s: %r",
                               entry.status.run_id, err)
            with self._cond:
                if self._pending.get(entry.status.run_id) is not entry or \
                        entry.status.state.terminal:
                    continue  # written and dropped, or its final state offered meanwhile
                if status is None:  # the run is gone without an end (never launched)
                    self._pending.pop(entry.status.run_id, None)
                elif not entry.dirty and _changes(status) == _changes(entry.status):
                    entry.written_at = self._clock()  # as written: look again later
                else:
                    entry.status, entry.dirty = status, True
                    if status.state.terminal:
                        self._finals.add(status.run_id)

    def _take_cancels(self) -> None:
        """Cancel the followed runs another process asked to cancel (the writer's thread
        only: it uses the writer's connections). One query per database, in the rounds
        where a followed unfinished run is due to be sampled."""
        with self._cond:
            now = self._clock()
            due = {entry.path for entry in self._pending.values()
                   if entry.cancel is not None and not entry.status.state.terminal
                   and now - entry.written_at >= self._interval_s}
            if not due:
                return
            followed = {run_id: entry for run_id, entry in self._pending.items()
                        if entry.path in due and entry.cancel is not None
                        and not entry.status.state.terminal}
        for path in due:
            try:
                conn = self._connection(path)
                asked = pending_cancels(conn)
                taken = [followed[run_id] for run_id in asked if run_id in followed
                         and followed[run_id].path == path]
                if not taken:
                    continue
                for entry in taken:
                    try:
                        if entry.cancel is not None:
                            entry.cancel()
                    except Exception as err:  # pragma: no cover - Run.cancel() does not raise
                        self.warn_once(f"cancel:{entry.status.run_id}", "cannot cancel run "
                                       "%s: %r", entry.status.run_id, err)
                clear_cancels(conn, [entry.status.run_id for entry in taken])
            except sqlite3.Error as err:  # asked again next round; the write path reports
                if not _busy(err):
                    self.warn_once(f"cancels:{path}", "cannot read the cancels asked for "
                                   "in %s: %s", path, err)

    def _loop(self) -> None:
        idle_since = None
        while True:
            self._take_cancels()
            self._sample_followed()
            with self._cond:
                due, wait = self._due_locked()
                if not due:
                    if wait is None:  # nothing to write or follow: linger, then end
                        now = self._clock()
                        idle_since = now if idle_since is None else idle_since
                        if now - idle_since >= LINGER_S:
                            self._thread = None
                            self._cond.notify_all()
                            return
                        self._cond.notify_all()  # flush() waiters: all written
                        wait = idle_since + LINGER_S - now
                    else:
                        idle_since = None
                    if wait > 0:
                        self._cond.wait(max(wait, ROUND_S))
                    continue
                idle_since = None
                self._writing = len(due)
            written = self._write(due)
            with self._cond:
                now = self._clock()
                for entry, status in due:
                    entry.written_at = now
                    if status is entry.status and entry in written:
                        entry.dirty = False
                        if status.state.terminal:
                            self._pending.pop(status.run_id, None)
                            self._finals.discard(status.run_id)
                            self.finals_written += 1
                    if entry.path in self._broken:
                        self._pending.pop(status.run_id, None)
                        self._finals.discard(status.run_id)
                self._writing = 0
                self._cond.notify_all()

    def _connection(self, path: Path) -> sqlite3.Connection:
        """The writer's connection to ``path``, kept open across writer threads.

        Kept, because closing the last connection to a WAL database checkpoints it and
        deletes its WAL file, which every run would then pay for. Only the latest
        database's connection is kept (the data folder rarely changes).
        """
        conn = self._connections.get(path)
        if conn is None:
            for stale in self._connections.values():
                stale.close()
            self._connections.clear()
            conn = self._connections[path] = open_db(path)
        return conn

    def _write(self, due: list[tuple[_Entry, RunStatus]]) -> list[_Entry]:
        """Write ``due`` (one transaction per database); return the entries written."""
        written: list[_Entry] = []
        for path in {entry.path for entry, _ in due}:
            batch = [(entry, status) for entry, status in due if entry.path == path]
            try:
                conn = self._connection(path)
                with transaction(conn):
                    for entry, status in batch:
                        conn.execute("SAVEPOINT run")  # a run skipped leaves no half
                        try:
                            write_run(conn, status, entry.fingerprints)
                            conn.execute("RELEASE run")
                        except sqlite3.DatabaseError:
                            raise  # the database's fault, not this run's
                        except Exception as err:  # this run's data: skip it, go on
                            conn.execute("ROLLBACK TO run")
                            conn.execute("RELEASE run")
                            self.warn_once(f"run:{status.run_id}", "cannot record run %s: "
                                           "%r", status.run_id, err)
                    self._prune(conn, {status.pipeline for _, status in batch
                                       if status.state.terminal})
                written.extend(entry for entry, _ in batch)
                self._busy.pop(path, None)
            except Exception as err:  # never let the writer die: a run must not wait on it
                stale = self._connections.pop(path, None)
                if stale is not None:
                    stale.close()
                if _busy(err):  # retried at the next round; said only if it keeps happening
                    # (two processes creating the database at once get one SQLITE_BUSY that
                    # no busy timeout waits for: switching it to WAL needs it alone)
                    self._busy[path] = self._busy.get(path, 0) + 1
                    if self._busy[path] >= BUSY_WARN_AFTER:
                        self.warn_once(f"busy:{path}", "run history %s is busy (%s); "
                                       "retrying", path, err)
                    continue
                with self._cond:
                    self._broken.add(path)
                self.warn_once(f"broken:{path}", "run history is off for this process: "
                               "cannot write %s (%s); runs go on unrecorded", path, err)
        return written

    def _prune(self, conn: sqlite3.Connection, pipelines: set[str]) -> None:
        """Keep the newest ``history_keep()`` finished runs of each of ``pipelines``; a
        failure here never costs the writes before it."""
        if not pipelines:
            return
        try:
            keep = history_keep()
        except ConfigError as err:  # said at the run's start too; nothing is removed
            self.warn_once(f"keep:{err}", "run history is not pruned: %s", err)
            return
        conn.execute("SAVEPOINT prune")
        try:
            for pipeline in sorted(pipelines):
                prune_runs(conn, keep, pipeline, over=slack(keep))
        except sqlite3.Error as err:
            conn.execute("ROLLBACK TO prune")
            self.warn_once(f"prune:{err}", "cannot prune the run history: %s", err)
        conn.execute("RELEASE prune")


_WRITER = HistoryWriter()  # the process's one writer (no thread until the first run)


def writer() -> HistoryWriter:
    """The process's writer; a forked child gets one of its own (the parent's thread is
    not in the child, its lock may have been held at the fork, its connections are not
    to be shared)."""
    global _WRITER
    if _WRITER.pid != os.getpid():
        _WRITER = HistoryWriter()
    return _WRITER


def _flush_at_exit() -> None:
    if _WRITER.pid == os.getpid():  # a forked child's inherited registration: not its writer
        _WRITER.flush(EXIT_FLUSH_S)


def flush(timeout_s: float = 2.0, *, finished_only: bool = False) -> bool:
    """Write every recorded snapshot not written yet; block at most ``timeout_s``.

    Returns True once everything pending is in the database. ``finished_only``: see
    ``HistoryWriter.flush``.
    """
    return writer().flush(timeout_s, finished_only=finished_only)


def warn_once(key: str, message: str, *args: Any) -> None:
    """Log ``message`` on ``stagewidget.history`` as a warning, once per process per ``key``."""
    writer().warn_once(key, message, *args)


def _changes(status: RunStatus) -> tuple[Any, ...]:
    """What a new write of a running run would change (its clock aside): a run held
    without progress is not written again and again."""
    current = status.current_stage
    return (status.state, status.current, status.error is not None,
            tuple((s.state, s.done, s.total) for s in status.stages),
            None if current is None else (tuple(current.metrics.items()), current.message))


def _busy(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and (
        "locked" in str(err) or "busy" in str(err))


# -- snapshot <-> rows ---------------------------------------------------------------------
