"""Open stagewidget's SQLite databases: WAL, a busy timeout, versioned idempotent schemas.

Several processes (kernels, scripts, service workers) may write one database at once:
WAL lets readers go on while one writer writes, and ``busy_timeout`` makes a writer
wait its turn instead of failing. Each part of the package that keeps tables here
(the run history, a stage cache) names its schema in the ``schema_version`` table, so
parts are created and upgraded independently, and a database written by a newer
stagewidget is refused with a clear error instead of being misread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

__all__ = ["BUSY_TIMEOUT_S", "connect", "ensure_schema", "transaction"]

BUSY_TIMEOUT_S = 10.0  # how long a write waits for another process's write to end


def connect(path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open (creating if need be) the database at ``path`` in WAL mode.

    The connection is in autocommit mode (use ``transaction()`` for several
    statements) and may be used from another thread than the one that opened it, one
    thread at a time.

    Raises:
        sqlite3.Error: the file cannot be opened, or is not a database.
    """
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        # WAL with synchronous=NORMAL survives a process crash (a kernel killed); only a
        # power loss may drop the last transactions. History is not worth an fsync per write.
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception).

    IMMEDIATE takes the write lock at the start, so two processes never both read and
    then fail to upgrade to writing (a deadlock SQLite would answer with SQLITE_BUSY at
    once, without waiting for the busy timeout).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def ensure_schema(conn: sqlite3.Connection, component: str, version: int, ddl: str,
                  upgrades: Mapping[int, str] | None = None) -> None:
    """Create ``component``'s tables with ``ddl``, or upgrade older ones to ``version``.

    Idempotent and safe when several processes do it at once: the check is repeated
    inside a write transaction. ``ddl`` must use ``CREATE ... IF NOT EXISTS``.
    ``upgrades[n]`` is the DDL that takes version ``n`` to ``n + 1``; the steps from the
    version found run in one transaction, so a reader never sees half an upgrade.

    Raises:
        ConfigError: the database holds a newer version of the schema than ``version``,
            or an older one that ``upgrades`` has no step for.
        sqlite3.Error: the database cannot be read or written.
    """
    try:
        found = _version(conn, component)
    except sqlite3.OperationalError:  # no schema_version table yet
        found = None
    if found == version:
        return
    with transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                     "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        found = _version(conn, component)
        if found is None:
            _run(conn, ddl)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (component, version))
        elif found < version:
            for step in range(found, version):
                if upgrades is None or step not in upgrades:
                    raise ConfigError(
                        f"the {component} tables of {_name(conn)} have schema version "
                        f"{found}, which this stagewidget cannot upgrade (from {step} to "
                        f"{step + 1}); set STAGEWIDGET_HOME to another folder")
                _run(conn, upgrades[step])
            conn.execute("UPDATE schema_version SET version = ? WHERE component = ?",
                         (version, component))
        elif found > version:
            raise ConfigError(
                f"the {component} tables of {_name(conn)} have schema version {found}, newer "
                f"than this stagewidget's ({version}); upgrade stagewidget or set "
                "STAGEWIDGET_HOME to another folder"
            )


def _run(conn: sqlite3.Connection, ddl: str) -> None:
    for statement in ddl.split(";"):
        if statement.strip():
            conn.execute(statement)


def _version(conn: sqlite3.Connection, component: str) -> int | None:
    row = conn.execute("SELECT version FROM schema_version WHERE component = ?",
                       (component,)).fetchone()
    return None if row is None else int(row[0])


def _name(conn: sqlite3.Connection) -> str:
    try:
        row = conn.execute("PRAGMA database_list").fetchone()
        return repr(row[2]) if row and row[2] else "the database"
    except sqlite3.Error:
        return "the database"
