"""The run history: every run's status recorded in SQLite off the hot path, read back.

Recording: a ``RunRecorder`` (one per run, subscribed as an observer) hands each
snapshot to the process's one ``HistoryWriter``, which keeps only the latest snapshot
of each run and writes, from its own thread, each changed run at most once every
``WRITE_INTERVAL_S`` and its final state always. Nothing a run does waits for the
database: a database that cannot be written (read-only, full disk, damaged) is logged
once on the ``stagewidget.history`` logger and the runs go on unrecorded.

Reading: ``read_history()`` gives the recorded runs as ``RunStatus`` snapshots, newest
first; their result reads as released (it is never recorded). A run recorded as
unfinished whose owner process is gone from this host reads as ``lost`` and is
recorded so.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..status import (
    ErrorInfo,
    Outcome,
    RunState,
    RunStatus,
    StageState,
    StageStatus,
    json_safe,
)
from .db import connect, ensure_schema, transaction
from .home import data_home
from .owner import default_owner, owner_alive, process_started

__all__ = ["HISTORY_ENV", "HistoryWriter", "RunRecorder", "flush", "history_path",
           "open_history", "read_history", "recording_on", "warn_once"]

_log = logging.getLogger("stagewidget.history")

HISTORY_ENV = "STAGEWIDGET_HISTORY"
DB_NAME = "history.sqlite3"
WRITE_INTERVAL_S = 1.0  # a running run is written at most this often
LINGER_S = 1.0  # an idle writer thread waits this long for new work before it ends
EXIT_FLUSH_S = 5.0  # at exit, the writer gets this long to write what is left
SCHEMA_VERSION = 1
_TRACEBACK_CHARS = 20_000  # a recorded traceback is cut to its last this many characters
_MAX_INT = 2**63 - 1  # SQLite's integers are 64-bit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, state TEXT NOT NULL,
    current INTEGER, created_at REAL, started_at REAL, finished_at REAL, updated_at REAL,
    elapsed_s REAL, retry_of TEXT, error_type TEXT, error_message TEXT,
    error_traceback TEXT, error_stage TEXT, owner TEXT NOT NULL, owner_started TEXT);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, created_at);
CREATE INDEX IF NOT EXISTS runs_finished ON runs (pipeline, state, finished_at);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL,
    state TEXT NOT NULL, done INTEGER, total INTEGER, started_at REAL, finished_at REAL,
    elapsed_s REAL, expected_s REAL, fingerprint TEXT, metrics TEXT,
    PRIMARY KEY (run_id, position))
"""

_RELEASED = Outcome()
_RELEASED.release()  # a recorded run's result was never recorded: it reads as released


def recording_on(pipeline: Any) -> bool:
    """Whether runs of ``pipeline`` are recorded: its ``history`` and ``$STAGEWIDGET_HISTORY``.

    Raises:
        ConfigError: ``$STAGEWIDGET_HISTORY`` is set to something other than a switch.
    """
    if not getattr(pipeline, "history", True):
        return False
    text = os.environ.get(HISTORY_ENV, "")
    switch = text.strip().lower()
    if switch in ("", "1", "true", "yes", "on"):
        return True
    if switch in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{HISTORY_ENV}={text!r} is not a switch; set it to 1 (record runs, "
                      "the default) or 0 (record nothing)")


def history_path(*, create: bool = True) -> Path:
    """The history database's path, in the data folder (``$STAGEWIDGET_HOME``).

    Raises:
        OSError: the data folder cannot be created (``create=True``).
    """
    return data_home(create=create) / DB_NAME


def open_history(pipeline: Any) -> Path | None:
    """The database ``pipeline``'s runs are recorded in, or None when they are not.

    None too (logged once) when the data folder cannot be created.

    Raises:
        ConfigError: ``$STAGEWIDGET_HISTORY`` is not a switch.
    """
    if not recording_on(pipeline):
        return None
    try:
        return history_path()
    except OSError as err:
        _writer().warn_once(f"home:{err}", "run history is off: cannot create the data folder "
                                         "(%s); set STAGEWIDGET_HOME to a writable folder", err)
        return None


class RunRecorder:
    """An observer recording one run's snapshots in the history database at ``path``.

    Called on the ticker thread; it only hands the snapshot to the process's writer.
    """

    __slots__ = ("fingerprints", "path")

    def __init__(self, path: Path, fingerprints: Sequence[str | None]) -> None:
        self.path = path
        self.fingerprints = tuple(fingerprints)

    def __call__(self, status: RunStatus) -> None:
        _writer().offer(self.path, status, self.fingerprints)

    def prepare(self) -> None:
        """Start the writer thread now, from the caller's thread (call before launching).

        So the recorder, called on the ticker's thread, never starts a thread itself: a
        delivery that slow would count as a stuck observer there.
        """
        _writer().prepare()

    def __repr__(self) -> str:
        return f"<RunRecorder {str(self.path)!r}>"


@dataclass(slots=True, eq=False)
class _Entry:
    path: Path
    status: RunStatus
    fingerprints: tuple[str | None, ...]
    written_at: float  # monotonic time of the last write (or try, or the first offer)
    dirty: bool = True


class HistoryWriter:
    """Writes the latest snapshot of each run; one per process, its thread started lazily.

    The thread (``stagewidget-history``, a daemon) is started by ``prepare()`` when a
    run is created (in its caller's thread), ends once nothing was left to write for
    ``LINGER_S``, and starts again with the next run; at exit, what is left is written
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
        self._warned: set[str] = set()
        self._at_exit = False
        self.pid = os.getpid()
        # only the writer thread uses these (one thread at a time: a new one starts once
        # the last has stopped touching them)
        self._connections: dict[Path, sqlite3.Connection] = {}

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
            if self._thread is None:
                self._start_locked()
            elif status.state.terminal or \
                    self._clock() - entry.written_at >= self._interval_s:
                self._cond.notify_all()

    def prepare(self) -> None:
        """Start the writer thread unless it runs (it lingers ``LINGER_S`` when idle)."""
        with self._cond:
            if self._thread is None:
                self._start_locked()
            self._cond.notify_all()  # a lingering thread: its idle time starts over

    def flush(self, timeout_s: float, *, finished_only: bool = False) -> bool:
        """Write every pending snapshot now; block until written (True) or ``timeout_s``.

        With ``finished_only``, return as soon as every finished run is written (at once
        when none waits), so the next run's expected durations include them.
        """
        with self._cond:
            if finished_only and not any(e.dirty and e.status.state.terminal
                                         for e in self._pending.values()):
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
        """(entries to write now with their snapshot, seconds until the next is due)."""
        now, due, wait = self._clock(), [], None
        for entry in self._pending.values():
            if not entry.dirty:
                continue
            left = entry.written_at + self._interval_s - now
            if left <= 0 or self._urgent or entry.status.state.terminal:
                due.append((entry, entry.status))
            else:
                wait = left if wait is None else min(wait, left)
        return due, wait

    def _loop(self) -> None:
        while True:
            with self._cond:
                due, wait = self._due_locked()
                idle_since = None
                while not due:
                    if wait is None:  # nothing to write: linger a while, then end
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
                    self._cond.wait(wait)
                    due, wait = self._due_locked()
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
                    if entry.path in self._broken:
                        self._pending.pop(status.run_id, None)
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
            conn = connect(path)
            try:
                ensure_schema(conn, "history", SCHEMA_VERSION, _SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._connections[path] = conn
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
                            _upsert(conn, status, entry.fingerprints)
                            conn.execute("RELEASE run")
                        except sqlite3.DatabaseError:
                            raise  # the database's fault, not this run's
                        except Exception as err:  # this run's data: skip it, go on
                            conn.execute("ROLLBACK TO run")
                            conn.execute("RELEASE run")
                            self.warn_once(f"run:{status.run_id}", "cannot record run %s: "
                                           "%r", status.run_id, err)
                written.extend(entry for entry, _ in batch)
            except Exception as err:  # never let the writer die: a run must not wait on it
                stale = self._connections.pop(path, None)
                if stale is not None:
                    stale.close()
                if _busy(err):  # another process held the lock past the busy timeout
                    self.warn_once(f"busy:{path}", "run history %s is busy (%s); retrying",
                                   path, err)
                    continue
                with self._cond:
                    self._broken.add(path)
                self.warn_once(f"broken:{path}", "run history is off for this process: "
                               "cannot write %s (%s); runs go on unrecorded", path, err)
        return written


_WRITER = HistoryWriter()  # the process's one writer (no thread until the first run)


def _writer() -> HistoryWriter:
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
    return _writer().flush(timeout_s, finished_only=finished_only)


def warn_once(key: str, message: str, *args: Any) -> None:
    """Log ``message`` on ``stagewidget.history`` as a warning, once per process per ``key``."""
    _writer().warn_once(key, message, *args)


def _busy(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and (
        "locked" in str(err) or "busy" in str(err))


# -- snapshot <-> rows ---------------------------------------------------------------------
def _real(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and -_MAX_INT <= value <= _MAX_INT else None


def _text(value: Any) -> str | None:
    """``value`` as text SQLite accepts: lone surrogates (a stage's odd bytes) escaped."""
    if value is None:
        return None
    text = str(json_safe(value))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _upsert(conn: sqlite3.Connection, status: RunStatus,
            fingerprints: tuple[str | None, ...]) -> None:
    error = status.error
    trace = error.traceback[-_TRACEBACK_CHARS:] if error is not None else None
    conn.execute(
        "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (_text(status.run_id), _text(status.pipeline), status.state.value,
         _integer(status.current), _real(status.created_at), _real(status.started_at),
         _real(status.finished_at), _real(status.updated_at), _real(status.elapsed_s),
         _text(status.retry_of), _text(error.type) if error else None,
         _text(error.message) if error else None, _text(trace),
         _text(error.stage) if error else None, default_owner(), process_started()))
    conn.executemany(
        "INSERT OR REPLACE INTO stages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(_text(status.run_id), i, _text(s.name), s.state.value, _integer(s.done),
          _integer(s.total),
          _real(s.started_at), _real(s.finished_at), _real(s.elapsed_s), _real(s.expected_s),
          fingerprints[i] if i < len(fingerprints) else None,
          json.dumps({str(k): json_safe(v) for k, v in s.metrics.items()}))
         for i, s in enumerate(status.stages)])


def read_history(pipeline: str | None = None, limit: int = 50, *,
                 path: Path | None = None) -> list[RunStatus]:
    """The recorded runs (of ``pipeline``, or all), newest first, at most ``limit``.

    Unfinished runs whose owner process is gone from this host read as ``lost`` (and
    are recorded so). No database yet gives an empty list.

    Raises:
        sqlite3.Error: the database cannot be read.
        ConfigError: it was written by a newer stagewidget.
    """
    path = history_path(create=False) if path is None else path
    if not path.exists():
        return []
    conn = connect(path)
    try:
        ensure_schema(conn, "history", SCHEMA_VERSION, _SCHEMA)
        conn.row_factory = sqlite3.Row
        where, args = ("WHERE pipeline = ?", (pipeline, limit)) if pipeline is not None \
            else ("", (limit,))
        chosen = f"SELECT run_id FROM runs {where} ORDER BY created_at DESC, rowid DESC " \
                 "LIMIT ?"
        runs = conn.execute(f"SELECT * FROM runs WHERE run_id IN ({chosen}) "
                            "ORDER BY created_at DESC, rowid DESC", args).fetchall()
        stages: dict[str, list[StageStatus]] = {}
        for row in conn.execute(f"SELECT * FROM stages WHERE run_id IN ({chosen}) "
                                "ORDER BY run_id, position", args):
            stages.setdefault(row["run_id"], []).append(_stage(row))
        statuses = [_run(row, tuple(stages.get(row["run_id"], ()))) for row in runs]
        return [_lost_if_orphaned(conn, status, row) for status, row in zip(statuses, runs,
                                                                              strict=True)]
    finally:
        conn.close()


def _stage(row: sqlite3.Row) -> StageStatus:
    try:
        metrics = json.loads(row["metrics"] or "{}")
    except ValueError:
        metrics = {}
    return StageStatus(name=row["name"], state=StageState(row["state"]),
                       done=row["done"] or 0, total=row["total"],
                       started_at=row["started_at"], finished_at=row["finished_at"],
                       elapsed_s=row["elapsed_s"] or 0.0, expected_s=row["expected_s"],
                       metrics=metrics if isinstance(metrics, dict) else {})


def _run(row: sqlite3.Row, stages: tuple[StageStatus, ...]) -> RunStatus:
    error = None
    if row["error_type"] is not None:
        error = ErrorInfo(type=row["error_type"], message=row["error_message"] or "",
                          traceback=row["error_traceback"] or "", stage=row["error_stage"])
    return RunStatus(run_id=row["run_id"], pipeline=row["pipeline"],
                     state=RunState(row["state"]), stages=stages, current=row["current"],
                     created_at=row["created_at"] or 0.0, started_at=row["started_at"],
                     finished_at=row["finished_at"], updated_at=row["updated_at"] or 0.0,
                     elapsed_s=row["elapsed_s"] or 0.0, error=error, retry_of=row["retry_of"],
                     outcome=_RELEASED)


def _lost_if_orphaned(conn: sqlite3.Connection, status: RunStatus, row: sqlite3.Row
                      ) -> RunStatus:
    """``status`` as ``lost`` (recorded so) when it is unfinished and its owner is gone."""
    host = socket.gethostname()
    if status.state.terminal or row["owner"].rpartition(":")[0] != host:
        return status  # finished, or another host's run: nobody here can tell if it lives
    if owner_alive(row["owner"], host, row["owner_started"]):
        return status
    try:  # only if nobody wrote it since we read it (its owner's final write wins)
        conn.execute("UPDATE runs SET state = ? WHERE run_id = ? AND state = ?",
                     (RunState.LOST.value, status.run_id, status.state.value))
    except sqlite3.Error as err:
        _writer().warn_once(f"lost:{err}", "cannot record run %s as lost: %s",
                          status.run_id, err)
    return replace(status, state=RunState.LOST)
