"""The run history read by a process that runs nothing: a dashboard (the Jupyter extension).

One ``HistoryReader`` keeps one connection and, for a live view, a cursor: ``changes()``
gives every run written since its last call (by ``seq``, see ``records``), and the
unfinished runs whose owner died meanwhile, now recorded as ``lost``. ``cancel()`` asks
a run's owner to cancel it (``cancels``). Every method blocks on the database: call
them from one thread at a time, off any event loop.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import InvalidTransition, RunNotFound
from ..status import RunState, RunStatus
from .cancels import request_cancel
from .history import damaged_row, history_path, lost_if_orphaned
from .owner import owner_alive
from .records import mark_lost, open_db, runs_from_rows

__all__ = ["HistoryReader", "Seen"]

Seen = tuple[int, RunStatus]  # a run's status as read, with the seq of the write it came from
_TERMINAL = tuple(s.value for s in RunState if s.terminal)
_UNFINISHED = f"state NOT IN ({', '.join('?' * len(_TERMINAL))})"
# states whose runs may read otherwise than recorded (an unfinished run whose owner died)
_UNSURE = (RunState.LOST.value, RunState.PENDING.value, RunState.RUNNING.value)


class HistoryReader:
    """Reads the history database at ``path`` (default: the data folder's, read at each
    open); a database not created yet reads as empty."""

    def __init__(self, path: Path | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._cursor: int | None = None  # the largest seq changes() has seen
        # unfinished runs changes() has seen: run id -> (owner, owner_started, state)
        self._unfinished: dict[str, tuple[str, str | None, str]] = {}

    @property
    def path(self) -> Path:
        """The database's path."""
        return history_path(create=False) if self._path is None else self._path

    def close(self) -> None:
        """Close the connection (idempotent); the next call opens it again."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def runs(self, *, state: str | None = None, pipeline: str | None = None,
             limit: int = 200) -> list[Seen]:
        """The recorded runs, newest first, of ``pipeline`` and in ``state`` if given."""
        conn = self._db()
        if conn is None:
            return []
        where: list[str] = []
        args: list[object] = []
        if pipeline is not None:
            where.append("pipeline = ?")
            args.append(pipeline)
        if state is not None:
            # a run recorded as running may read as lost (its owner died): filtered after
            # the owner check
            states = (state, "pending", "running") if state == RunState.LOST.value else (state,)
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args += states
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        found = self._read(conn, f"{clause} ORDER BY created_at DESC, rowid DESC LIMIT ?",
                           [*args, limit])
        if state is not None:
            found = [seen for seen in found if seen[1].state.value == state]
        return found

    def count(self, *, state: str | None = None, pipeline: str | None = None) -> int:
        """How many runs ``runs()`` would give without a limit."""
        if state in _UNSURE:  # an unfinished run may read as lost: read them (they are few)
            return len(self.runs(state=state, pipeline=pipeline, limit=-1))
        conn = self._db()
        if conn is None:
            return 0
        where = [(column, value) for column, value in (("pipeline", pipeline),
                                                       ("state", state)) if value is not None]
        clause = f"WHERE {' AND '.join(f'{c} = ?' for c, _ in where)}" if where else ""
        return int(conn.execute(f"SELECT count(*) FROM runs {clause}",
                                [v for _, v in where]).fetchone()[0])

    def by_ids(self, run_ids: list[str]) -> dict[str, Seen]:
        """The recorded runs among ``run_ids``, by id."""
        conn = self._db()
        found: dict[str, Seen] = {}
        if conn is None:
            return found
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start:start + 500]
            for seen in self._read(conn, f"WHERE run_id IN ({', '.join('?' * len(chunk))})",
                                   list(chunk)):
                found[seen[1].run_id] = seen
        return found

    def run(self, run_id: str) -> Seen | None:
        """The run ``run_id`` as recorded, or None."""
        conn = self._db()
        if conn is None:
            return None
        found = self._read(conn, "WHERE run_id = ?", [run_id])
        return found[0] if found else None

    def restart(self) -> None:
        """Start ``changes()`` afresh: from the latest write (from the first, when there
        is no database yet: every write to come is new)."""
        conn = self._db()
        self._cursor, self._unfinished = 0, {}
        if conn is None:
            return
        self._cursor = int(conn.execute("SELECT coalesce(max(seq), 0) FROM runs")
                           .fetchone()[0])
        rows = conn.execute(f"SELECT run_id, owner, owner_started, state FROM runs "
                            f"WHERE {_UNFINISHED}", _TERMINAL).fetchall()
        self._unfinished = {r[0]: (r[1], r[2], r[3]) for r in rows}

    def changes(self) -> list[Seen]:
        """The runs written since the last call (or ``restart()``; none at the first
        call), oldest write first; unfinished runs whose owner is gone from this host are
        recorded lost and given."""
        if self._cursor is None:
            self.restart()
            return []
        conn = self._db()
        if conn is None:
            return []
        host = socket.gethostname()
        for run_id, (owner, started, state) in list(self._unfinished.items()):
            if owner.rpartition(":")[0] == host and not owner_alive(owner, host, started):
                mark_lost(conn, run_id, state)  # next seq: read below
                del self._unfinished[run_id]
        rows = conn.execute("SELECT * FROM runs WHERE seq > ? ORDER BY seq",
                            [self._cursor]).fetchall()
        if rows:  # past every row read, those that cannot be (left out) too
            self._cursor = max(self._cursor, max(int(row["seq"] or 0) for row in rows))
        return self._from_rows(conn, rows)

    def cancel(self, run_id: str) -> Seen:
        """Ask the owner of the unfinished run ``run_id`` to cancel it; its status now.

        Its owner's history writer takes the request within about a second.

        Raises:
            RunNotFound: no run ``run_id`` is recorded.
            InvalidTransition: the run has ended (or is lost): nothing to cancel.
        """
        seen = self.run(run_id)
        conn = self._conn
        if seen is None or conn is None:
            raise RunNotFound(f"no run with id {run_id!r} in the run history {str(self.path)!r}")
        if seen[1].state.terminal:
            raise InvalidTransition(f"run {run_id!r} has already ended "
                                    f"({seen[1].state.value}): there is nothing to cancel")
        request_cancel(conn, run_id, self._clock())
        return seen

    # -- helpers ---------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection | None:
        if self._conn is None:
            path = self.path
            if not path.exists():
                return None
            self._conn = open_db(path)
            self._conn.row_factory = sqlite3.Row
        return self._conn

    def _read(self, conn: sqlite3.Connection, tail: str, args: list[object]) -> list[Seen]:
        """The runs ``SELECT * FROM runs <tail>`` picks, with their stages, lost ones
        recorded so; the unfinished ones remembered for ``changes()``."""
        return self._from_rows(conn, conn.execute(f"SELECT * FROM runs {tail}", args).fetchall())

    def _from_rows(self, conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Seen]:
        if not rows:
            return []
        ids = [row["run_id"] for row in rows]
        stage_rows: list[sqlite3.Row] = []
        for start in range(0, len(ids), 500):  # SQLite's bound on parameters
            chunk = ids[start:start + 500]
            stage_rows += conn.execute(
                f"SELECT * FROM stages WHERE run_id IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY run_id, position", chunk)
        found = []
        for row, read in runs_from_rows(rows, stage_rows, damaged_row):
            status = lost_if_orphaned(conn, read, row)
            if self._cursor is not None:
                if status.state.terminal:
                    self._unfinished.pop(status.run_id, None)
                else:
                    self._unfinished[status.run_id] = (row["owner"], row["owner_started"],
                                                       row["state"])
            found.append((int(row["seq"] or 0), status))
        return found
