"""The SQLite store: runs that survive a restart, shared by the processes of one host.

One database file (stdlib ``sqlite3``, WAL journal, a busy timeout) holds:

- ``runs``: one row per run (the ``Record`` fields), its expiry (``keep_s`` after its
  latest write), the store that wrote it last and ``seq``, a number taken from
  ``counter`` on every write, so "what changed since" is one indexed query.
- ``claims``: idempotency keys with their expiry; a record's write extends the claim
  that names its run, and removing the run drops it.
- ``cancels``: cancel requests, numbered, kept a minute.

SQLite has no publish/subscribe. Writes of this store reach its watchers at once;
writes of other processes (and their cancel requests) are found by a poller thread that
reads the database every ``POLL_S`` (0.2) seconds while anything is watched or a cancel
callback is registered. Expired rows are deleted by that poller now and then; reads
leave them out meanwhile.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ConfigError
from .store import DamagedRecord, Record, StoreUnavailable, Watcher, Watchers, claim_owner

__all__ = ["POLL_S", "SQLiteStore"]

_log = logging.getLogger("stagewidget.service")

POLL_S = 0.2  # how often other processes' writes and cancel requests are looked for
PURGE_S = 5.0  # how often the poller deletes expired rows
CANCEL_KEEP_S = 60.0  # how long a cancel request stays in the database
BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's write to end
_MAX_IN = 500  # most watched runs a poll names in its query; beyond, it filters here

_FIELDS = ("run_id", "pipeline", "state", "created_at", "finished_at", "heartbeat_at",
           "owner", "status_json", "claim")
_COLUMNS = ", ".join(_FIELDS)

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, state TEXT NOT NULL,
  created_at REAL NOT NULL, finished_at REAL, heartbeat_at REAL NOT NULL,
  owner TEXT NOT NULL, status_json TEXT NOT NULL, claim TEXT NOT NULL DEFAULT '',
  expires_at REAL NOT NULL, writer TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_seq ON runs (seq);
CREATE INDEX IF NOT EXISTS runs_by_expiry ON runs (expires_at);
CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 0), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO counter VALUES (0, 0);
CREATE TABLE IF NOT EXISTS claims (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cancels (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, requested_at REAL NOT NULL);
COMMIT;
"""
_PUT = f"""
INSERT OR REPLACE INTO runs ({_COLUMNS}, expires_at, writer, seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT seq FROM counter))
"""


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///path.db`` URL (``sqlite:////abs/path.db`` is absolute).

    Raises ``ConfigError`` for a URL without a path.
    """
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise ConfigError(f"a SQLite store URL is sqlite:///relative/path.db or "
                          f"sqlite:////absolute/path.db (got {url!r})")
    return url[len("sqlite:///"):]


def _create_private(path: str) -> None:
    """Create ``path`` empty (a valid empty database) readable by its owner only, unless it
    exists: records hold results, logs and tracebacks, which other local users must not
    read. SQLite gives its -wal and -shm files the database file's permissions."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


class SQLiteStore:
    """Records in a SQLite database file, shared by every process that opens it.

    Args:
        path: the database file (created with its tables if missing, readable by its
            owner only; ``~`` is expanded).
        clock: wall-clock function for expiry (default ``time.time``); every process
            sharing the file must agree on it.
        poll_s: how often other processes' writes and cancel requests are looked for.

    Raises:
        ConfigError: the file cannot be opened or created as a SQLite database.
    """

    name = "sqlite"
    blocking = True

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 poll_s: float = POLL_S) -> None:
        self.path = os.path.expanduser(os.fspath(path))
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            raise ConfigError(f"the SQLite store needs a file path (got {self.path!r}); "
                              "for runs kept in this process only, use the memory store")
        self.url = f"sqlite:///{self.path}"
        self._clock = clock
        self._poll_s = poll_s
        self._writer_id = uuid.uuid4().hex  # this store's rows are pushed, never polled
        # Writes of this process go one at a time: SQLite admits one writer anyway, and
        # its busy handler would make threads of one process wait by sleeping. Other
        # processes are waited for by busy_timeout. Readers need no lock (WAL).
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()  # guards _idle and _closed
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._watchers = Watchers()
        self._cancel_callbacks: list[Callable[[str], Any]] = []
        self._poller: threading.Thread | None = None
        self._poller_lock = threading.Lock()  # starts the poller thread once
        self._stop = threading.Event()
        self._seen_seq = 0
        self._seen_cancel = 0
        try:
            _create_private(self.path)
            connection = self._connect()
            try:
                with self._write_lock:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.executescript(_SCHEMA)
            except BaseException:
                connection.close()
                raise
            self._release(connection)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the SQLite store at {self.path!r} ({exc})") from None

    # -- connections ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # timeout= is SQLite's busy timeout. Autocommit (isolation_level None): writes open
        # BEGIN IMMEDIATE themselves, so a transaction never has to upgrade a read lock,
        # which the busy timeout cannot resolve.
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                     isolation_level=None, check_same_thread=False)
        # In WAL, NORMAL loses no commit when a process dies, only on power loss.
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _release(self, connection: sqlite3.Connection) -> None:
        with self._pool_lock:
            if not self._closed:
                self._idle.append(connection)
                return
        connection.close()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of the pool; ``sqlite3`` errors become ``StoreUnavailable``."""
        with self._pool_lock:
            if self._closed:
                raise StoreUnavailable(f"the SQLite store at {self.path!r} is closed")
            connection = self._idle.pop() if self._idle else None
        try:
            if connection is None:
                connection = self._connect()
            yield connection
        except sqlite3.Error as exc:
            if connection is not None:
                connection.close()  # its state is unknown: do not pool it again
                connection = None
            raise StoreUnavailable(f"the SQLite store at {self.path!r} is not answering "
                                   f"({exc})") from exc
        finally:
            if connection is not None:
                self._release(connection)

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on error)."""
        with self._write_lock, self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _record(self, row: tuple[Any, ...]) -> Record:
        """The record of a ``runs`` row; ``DamagedRecord`` if it holds damaged data."""
        return Record.from_fields({name: "" if value is None else str(value)
                                   for name, value in zip(_FIELDS, row)})

    # -- Store protocol ---------------------------------------------------------------
    def put(self, record: Record, *, keep_s: float) -> None:
        """Write ``record``, expiring ``keep_s`` from now, and notify this store's watchers.

        A record with a ``claim`` extends that claim to expire with it.
        """
        until = self._clock() + keep_s
        with self._writing() as db:
            db.execute("UPDATE counter SET seq = seq + 1")
            db.execute(_PUT, (record.run_id, record.pipeline, record.state, record.created_at,
                              record.finished_at, record.heartbeat_at, record.owner,
                              record.status_json, record.claim, until, self._writer_id))
            if record.claim:
                db.execute("UPDATE claims SET expires_at = ? WHERE key = ? AND (value = ? "
                           "OR substr(value, 1, ?) = ?)",
                           (until, record.claim, record.run_id, len(record.run_id) + 1,
                            record.run_id + " "))
        self._watchers.notify(record)

    def get(self, run_id: str) -> Record | None:
        """The run's record, or None if unknown or expired; ``DamagedRecord`` if bad."""
        with self._connection() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ? AND expires_at > ?",
                             (run_id, self._clock())).fetchone()
        return None if row is None else self._record(row)

    def records(self, pipeline: str | None = None) -> list[Record]:
        """Every live record (of ``pipeline``); damaged ones are logged and left out."""
        query = f"SELECT {_COLUMNS} FROM runs WHERE expires_at > ?"
        args: tuple[Any, ...] = (self._clock(),)
        if pipeline is not None:
            query, args = query + " AND pipeline = ?", (*args, pipeline)
        with self._connection() as db:
            rows = db.execute(query, args).fetchall()
        records = []
        for row in rows:
            try:
                records.append(self._record(row))
            except DamagedRecord as exc:
                _log.warning("skipping a damaged run record in SQLite: %s", exc)
        return records

    def remove(self, run_ids: list[str]) -> None:
        """Forget these runs, and the claims that name them."""
        if not run_ids:
            return
        with self._writing() as db:
            for run_id in run_ids:
                row = db.execute("SELECT claim FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if row is not None and row[0]:
                    value = db.execute("SELECT value FROM claims WHERE key = ?",
                                       (row[0],)).fetchone()
                    if value is not None and claim_owner(str(value[0])) == run_id:
                        db.execute("DELETE FROM claims WHERE key = ?", (row[0],))
                db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        """Set ``key`` to ``value`` unless already set (and not expired); return the old value."""
        now = self._clock()
        with self._writing() as db:
            row = db.execute("SELECT value FROM claims WHERE key = ? AND expires_at > ?",
                             (key, now)).fetchone()
            if row is not None:
                return str(row[0])
            db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (key, value, now + ttl_s))
            return None

    def claimed(self, key: str) -> str | None:
        """The value of claim ``key``, or None if unset or expired."""
        with self._connection() as db:
            row = db.execute("SELECT value FROM claims WHERE key = ? AND expires_at > ?",
                             (key, self._clock())).fetchone()
        return None if row is None else str(row[0])

    def release(self, key: str, value: str) -> None:
        """Drop claim ``key`` if it still holds ``value``."""
        with self._writing() as db:
            db.execute("DELETE FROM claims WHERE key = ? AND value = ?", (key, value))

    def watch(self, run_id: str, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` on each write of ``run_id``: from the writing thread for
        this store's writes, from the poller thread (within ``POLL_S``) for others'."""
        undo = self._watchers.add(run_id, watcher)
        self._start_poller()
        return undo

    def watch_all(self, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` on each write of any run: from the writing thread for
        this store's writes, from the poller thread (within ``POLL_S``) for others', new
        runs included (the poll then reads every row written since, by its ``seq`` index)."""
        undo = self._watchers.add_all(watcher)
        self._start_poller()
        return undo

    def request_cancel(self, run_id: str) -> None:
        """Record a cancel request; the owner's poller acts on it within ``POLL_S``."""
        with self._writing() as db:
            db.execute("INSERT INTO cancels (run_id, requested_at) VALUES (?, ?)",
                       (run_id, self._clock()))

    def on_cancel_request(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(run_id)`` from the poller thread for each cancel request."""
        self._cancel_callbacks.append(callback)
        self._start_poller()

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        with self._connection() as db:
            db.execute("SELECT seq FROM counter").fetchone()

    def close(self) -> None:
        """Stop the poller thread and close the connections (idempotent)."""
        self._stop.set()
        poller = self._poller
        if poller is not None and poller is not threading.current_thread():
            poller.join(5)
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # -- poller thread ----------------------------------------------------------------
    def _start_poller(self) -> None:
        with self._poller_lock:
            if self._poller is not None:
                return
            # Where to start is read now, before the caller goes on: a write after its
            # watch() began is then always seen.
            with self._connection() as db:
                self._seen_seq = int(db.execute("SELECT seq FROM counter").fetchone()[0])
                self._seen_cancel = int(db.execute(
                    "SELECT coalesce(max(id), 0) FROM cancels").fetchone()[0])
            self._poller = threading.Thread(target=self._poll_loop, daemon=True,
                                            name="stagewidget-sqlite-poller")
            self._poller.start()

    def _poll_loop(self) -> None:
        next_purge = time.monotonic() + PURGE_S
        while not self._stop.wait(self._poll_s):
            try:
                self._poll()
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_S
                    self._purge()
            except StoreUnavailable as exc:  # the next poll tries again
                _log.debug("polling the SQLite store failed: %s", exc)
            except Exception:  # the poller serves every watcher: it must go on
                _log.exception("polling the SQLite store failed; it goes on")

    def _poll(self) -> None:
        """Hand other stores' new writes to watchers and new cancel requests to callbacks."""
        every = self._watchers.watching_all()
        watched = [] if every else sorted(self._watchers.run_ids())
        query = f"SELECT seq, {_COLUMNS} FROM runs WHERE seq > ? AND writer != ?"
        args: tuple[Any, ...] = (self._seen_seq, self._writer_id)
        if watched and len(watched) <= _MAX_IN:
            query += f" AND run_id IN ({', '.join('?' * len(watched))})"
            args = (*args, *watched)
        with self._connection() as db:
            db.execute("BEGIN")  # one snapshot for the three reads
            try:
                top = int(db.execute("SELECT seq FROM counter").fetchone()[0])
                rows = (db.execute(query + " ORDER BY seq", args).fetchall()
                        if watched or every else [])
                cancels = db.execute("SELECT id, run_id FROM cancels WHERE id > ? ORDER BY id",
                                     (self._seen_cancel,)).fetchall()
            finally:
                db.execute("COMMIT")
        self._seen_seq = max(self._seen_seq, top)  # this store's own writes were pushed
        for _, *row in rows:
            try:
                record = self._record(tuple(row))
            except DamagedRecord as exc:
                _log.warning("a damaged run record in SQLite is not streamed: %s", exc)
                continue
            self._watchers.notify(record)
        for cancel_id, run_id in cancels:
            self._seen_cancel = max(self._seen_cancel, int(cancel_id))
            for callback in tuple(self._cancel_callbacks):
                try:
                    callback(str(run_id))
                except BaseException:  # the poller serves every run: it must go on
                    _log.exception("cancel callback %r failed", callback)

    def _purge(self) -> None:
        """Delete expired records and claims, and cancel requests over a minute old."""
        now = self._clock()
        with self._writing() as db:
            db.execute("DELETE FROM runs WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM claims WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM cancels WHERE requested_at <= ?", (now - CANCEL_KEEP_S,))
