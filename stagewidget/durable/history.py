"""The run history: every run's status recorded in SQLite, read back as snapshots.

Recording: a ``RunRecorder`` (one per run) has the process's one writer (``writer.py``)
follow the run: the writer samples it about once a second and is handed its final
snapshot when it ends, and writes them off the hot path (no observer: recording adds no
work to the delivery thread).
Reading: ``read_history()`` gives the recorded runs as ``RunStatus`` snapshots, newest
first; their result reads as released (it is never recorded). A run recorded as
unfinished whose owner process is gone from this host reads as ``lost`` and is
recorded so. Removing: ``clear_history()``; the writer prunes by itself (``retention``).
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..status import RunState, RunStatus
from . import eta
from .db import transaction
from .home import data_home
from .owner import owner_alive
from .records import TERMINAL, mark_lost, open_db, runs_from_rows, sql_text
from .retention import history_keep, prune_runs
from .writer import flush, warn_once, writer

__all__ = ["DB_NAME", "HISTORY_ENV", "RunRecorder", "clear_history", "damaged_row", "flush",
           "history_path",
           "lost_if_orphaned", "open_history", "read_history", "recording_on", "warn_once"]

HISTORY_ENV = "STAGEWIDGET_HISTORY"
DB_NAME = "history.sqlite3"


def recording_on(pipeline: Any) -> bool:
    """Whether runs of ``pipeline`` are recorded: its ``history`` and ``$STAGEWIDGET_HISTORY``.

    Raises:
        ConfigError: ``$STAGEWIDGET_HISTORY`` is set to something other than a switch, or
            ``$STAGEWIDGET_HISTORY_KEEP`` to something other than a whole number.
    """
    if not getattr(pipeline, "history", True):
        return False
    history_keep()  # a bad setting is said when a run starts, not only in the writer's log
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
        ConfigError: ``$STAGEWIDGET_HISTORY`` or ``$STAGEWIDGET_HISTORY_KEEP`` is not
            as described in ``recording_on``.
    """
    if not recording_on(pipeline):
        return None
    try:
        return history_path()
    except OSError as err:
        warn_once(f"home:{err}", "run history is off: cannot create the data folder (%s); "
                  "set STAGEWIDGET_HOME to a writable folder", err)
        return None


class RunRecorder:
    """Records one run in the history database at ``path``, through the process's writer.

    ``follow(status, sample, cancel)`` when the run starts; ``recorder(final_status)``
    when it ends. Neither blocks.
    """

    __slots__ = ("fingerprints", "path")

    def __init__(self, path: Path, fingerprints: Sequence[str | None]) -> None:
        self.path = path
        self.fingerprints = tuple(fingerprints)

    def __call__(self, status: RunStatus) -> None:
        writer().offer(self.path, status, self.fingerprints)

    def follow(self, status: RunStatus, sample: Callable[[], RunStatus | None],
               cancel: Callable[[], object] | None = None) -> None:
        """Record the run from ``status`` on, sampling it with ``sample()`` (None: gone);
        ``cancel()`` (from the writer's thread) when another process asks for a Cancel
        through the database (see ``cancels``)."""
        writer().follow(self.path, status, self.fingerprints, sample, cancel)

    def __repr__(self) -> str:
        return f"<RunRecorder {str(self.path)!r}>"


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
    conn = open_db(path)
    try:
        conn.row_factory = sqlite3.Row
        where, args = ("WHERE pipeline = ?", (pipeline, limit)) if pipeline is not None \
            else ("", (limit,))
        chosen = f"SELECT run_id FROM runs {where} ORDER BY created_at DESC, rowid DESC " \
                 "LIMIT ?"
        runs = conn.execute(f"SELECT * FROM runs WHERE run_id IN ({chosen}) "
                            "ORDER BY created_at DESC, rowid DESC", args).fetchall()
        stage_rows = conn.execute(f"SELECT * FROM stages WHERE run_id IN ({chosen}) "
                                  "ORDER BY run_id, position", args)
        return [lost_if_orphaned(conn, status, row)
                for row, status in runs_from_rows(runs, stage_rows, damaged_row)]
    finally:
        conn.close()


def clear_history(pipeline: str | None = None, keep: int = 0, *,
                  path: Path | None = None) -> int:
    """Remove the finished runs of ``pipeline`` (of every pipeline if None) but the newest
    ``keep`` of each; return how many were removed.

    Unfinished runs stay (their processes still write them); one whose process died
    counts as finished (``lost``). This process's runs are written first, and its ETA
    memo is dropped, so the next run's expected durations come from what is left.

    Raises:
        sqlite3.Error: the database cannot be read or written.
        ConfigError: it was written by a newer stagewidget.
    """
    flush()
    path = history_path(create=False) if path is None else path
    if not path.exists():
        return 0
    conn = open_db(path)
    try:
        conn.row_factory = sqlite3.Row
        name = sql_text(pipeline)
        where, args = ("AND pipeline = ?", [name]) if name is not None else ("", [])
        for row in conn.execute(f"SELECT * FROM runs WHERE state NOT IN "
                                f"({', '.join('?' * len(TERMINAL))}) {where}",
                                [*TERMINAL, *args]).fetchall():
            for _, status in runs_from_rows([row], (), damaged_row):
                lost_if_orphaned(conn, status, row)
        with transaction(conn):
            removed = prune_runs(conn, keep, pipeline)
    finally:
        conn.close()
    eta.forget()
    return removed


def damaged_row(run_id: str, err: Exception) -> None:
    """Say once that the recorded run ``run_id`` cannot be read (it is left out)."""
    warn_once(f"damaged:{run_id}", "run %s in the run history cannot be read and is left "
              "out (%s: %s)", run_id, type(err).__name__, err)


def lost_if_orphaned(conn: sqlite3.Connection, status: RunStatus, row: sqlite3.Row
                      ) -> RunStatus:
    """``status`` as ``lost`` (recorded so) when it is unfinished and its owner is gone."""
    host = socket.gethostname()
    if status.state.terminal or row["owner"].rpartition(":")[0] != host:
        return status  # finished, or another host's run: nobody here can tell if it lives
    if owner_alive(row["owner"], host, row["owner_started"]):
        return status
    try:  # only if nobody wrote it since we read it (its owner's final write wins)
        mark_lost(conn, status.run_id, status.state.value)
    except sqlite3.Error as err:
        warn_once(f"lost:{err}", "cannot record run %s as lost: %s", status.run_id, err)
    return replace(status, state=RunState.LOST)
