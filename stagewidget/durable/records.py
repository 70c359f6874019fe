"""The run history's tables, and a run's status as rows of them and back.

Each write of a run gives its row the next ``seq`` (one more than the largest): writers
take turns (``BEGIN IMMEDIATE``), so a reader that remembers the largest ``seq`` it saw
finds every later write with ``seq > n``, whatever the writers' clocks say (a run's
``updated_at`` is its owner's clock, written up to a second late). Removing runs never
lowers it: ``seq_floor`` keeps the largest ``seq`` removed. The ``cancels``
table holds Cancels asked for by another process (the Jupyter extension) until the
run's owner takes them.

Only text SQLite accepts goes in (lone surrogates escaped), ints that fit in 64 bits and
finite floats; the result is never recorded, and reads back as released.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..status import (
    ErrorInfo,
    Outcome,
    RunState,
    RunStatus,
    StageState,
    StageStatus,
    json_safe,
)
from .db import connect, ensure_schema
from .owner import default_owner, process_started

__all__ = ["SCHEMA", "SCHEMA_VERSION", "TERMINAL", "UPGRADES", "mark_lost", "open_db",
           "remove_runs", "run_from_row", "runs_from_rows", "sql_text", "stage_from_row",
           "write_run"]

SCHEMA_VERSION = 3
TERMINAL = tuple(s.value for s in RunState if s.terminal)
_TRACEBACK_CHARS = 20_000  # a recorded traceback is cut to its last this many characters
_MAX_INT = 2**63 - 1  # SQLite's integers are 64-bit

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, state TEXT NOT NULL,
    current INTEGER, created_at REAL, started_at REAL, finished_at REAL, updated_at REAL,
    elapsed_s REAL, retry_of TEXT, error_type TEXT, error_message TEXT,
    error_traceback TEXT, error_stage TEXT, owner TEXT NOT NULL, owner_started TEXT,
    seq INTEGER);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_by_seq ON runs (seq);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, created_at);
CREATE INDEX IF NOT EXISTS runs_finished ON runs (pipeline, state, finished_at);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL,
    state TEXT NOT NULL, done INTEGER, total INTEGER, started_at REAL, finished_at REAL,
    elapsed_s REAL, expected_s REAL, fingerprint TEXT, metrics TEXT,
    PRIMARY KEY (run_id, position));
CREATE TABLE IF NOT EXISTS cancels (run_id TEXT PRIMARY KEY, requested_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seq_floor (n INTEGER NOT NULL)
"""

# version n -> n + 1 (``db.ensure_schema``); v1 rows get their rowid as seq (in write order
# until a row is rewritten; every later write numbers after them)
UPGRADES = {1: """
ALTER TABLE runs ADD COLUMN seq INTEGER;
UPDATE runs SET seq = rowid;
CREATE INDEX IF NOT EXISTS runs_by_seq ON runs (seq);
CREATE TABLE IF NOT EXISTS cancels (run_id TEXT PRIMARY KEY, requested_at REAL NOT NULL)
""", 2: """
CREATE TABLE IF NOT EXISTS seq_floor (n INTEGER NOT NULL)
"""}
_NEXT_SEQ = ("(SELECT max(coalesce(max(seq), 0), (SELECT coalesce(max(n), 0) FROM seq_floor)) "
             "+ 1 FROM runs)")
_RUN_COLUMNS = ("run_id, pipeline, state, current, created_at, started_at, finished_at, "
                "updated_at, elapsed_s, retry_of, error_type, error_message, error_traceback, "
                "error_stage, owner, owner_started, seq")

_RELEASED = Outcome()
_RELEASED.release()  # a recorded run's result was never recorded: it reads as released


def open_db(path: Path) -> sqlite3.Connection:
    """Open the history database at ``path`` (created if need be), its tables made.

    Raises:
        sqlite3.Error: it cannot be opened or written.
        ConfigError: it was written by a newer stagewidget.
    """
    conn = connect(path)
    try:
        ensure_schema(conn, "history", SCHEMA_VERSION, SCHEMA, UPGRADES)
    except BaseException:
        conn.close()
        raise
    return conn


def _real(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and -_MAX_INT <= value <= _MAX_INT else None


def sql_text(value: Any) -> str | None:
    """``value`` as text SQLite accepts: lone surrogates (a stage's odd bytes) escaped."""
    if value is None:
        return None
    text = str(json_safe(value))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def write_run(conn: sqlite3.Connection, status: RunStatus,
              fingerprints: tuple[str | None, ...]) -> None:
    """Insert or replace the rows of ``status`` (its run and its stages)."""
    error = status.error
    trace = error.traceback[-_TRACEBACK_CHARS:] if error is not None else None
    conn.execute(
        f"INSERT OR REPLACE INTO runs ({_RUN_COLUMNS}) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {_NEXT_SEQ})",
        (sql_text(status.run_id), sql_text(status.pipeline), status.state.value,
         _integer(status.current), _real(status.created_at), _real(status.started_at),
         _real(status.finished_at), _real(status.updated_at), _real(status.elapsed_s),
         sql_text(status.retry_of), sql_text(error.type) if error else None,
         sql_text(error.message) if error else None, sql_text(trace),
         sql_text(error.stage) if error else None, default_owner(), process_started()))
    conn.executemany(
        "INSERT OR REPLACE INTO stages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(sql_text(status.run_id), i, sql_text(s.name), s.state.value, _integer(s.done),
          _integer(s.total),
          _real(s.started_at), _real(s.finished_at), _real(s.elapsed_s), _real(s.expected_s),
          fingerprints[i] if i < len(fingerprints) else None,
          json.dumps({str(k): json_safe(v) for k, v in s.metrics.items()}))
         for i, s in enumerate(status.stages)])


def mark_lost(conn: sqlite3.Connection, run_id: str, state: str) -> None:
    """Record ``run_id`` as lost (with the next ``seq``) unless its owner wrote another
    state since it was read as ``state`` (the owner's final write wins)."""
    conn.execute(f"UPDATE runs SET state = ?, seq = {_NEXT_SEQ} WHERE run_id = ? AND state = ?",
                 (RunState.LOST.value, run_id, state))


def remove_runs(conn: sqlite3.Connection, run_ids: list[str]) -> None:
    """Delete the runs ``run_ids`` with their stages and cancels, in the caller's
    transaction; the ``seq`` of later writes still grows past theirs."""
    if not run_ids:
        return
    floor = conn.execute("SELECT max(coalesce((SELECT max(seq) FROM runs), 0), "
                         "coalesce((SELECT max(n) FROM seq_floor), 0))").fetchone()[0]
    conn.execute("DELETE FROM seq_floor")
    conn.execute("INSERT INTO seq_floor VALUES (?)", (floor,))
    for start in range(0, len(run_ids), 500):  # SQLite's bound on parameters
        chunk = run_ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        for table in ("runs", "stages", "cancels"):
            conn.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", chunk)


def stage_from_row(row: sqlite3.Row) -> StageStatus:
    """A stage's status from its row."""
    try:
        metrics = json.loads(row["metrics"] or "{}")
    except (ValueError, RecursionError):  # damaged, or nested past what Python reads
        metrics = {}
    return StageStatus(name=row["name"], state=StageState(row["state"]),
                       done=row["done"] or 0, total=row["total"],
                       started_at=row["started_at"], finished_at=row["finished_at"],
                       elapsed_s=row["elapsed_s"] or 0.0, expected_s=row["expected_s"],
                       metrics=metrics if isinstance(metrics, dict) else {})


def runs_from_rows(runs: list[sqlite3.Row], stage_rows: Iterable[sqlite3.Row],
                   damaged: Callable[[str, Exception], object]
                   ) -> list[tuple[sqlite3.Row, RunStatus]]:
    """Each run's row with its status (stages from ``stage_rows``, in position order); a
    run whose rows cannot be read (a state this stagewidget does not know, a damaged
    value) is left out and given to ``damaged(run_id, error)``: one row cannot hide the rest."""
    stages: dict[str, list[StageStatus]] = {}
    bad: dict[str, Exception] = {}
    for row in stage_rows:
        try:
            stages.setdefault(row["run_id"], []).append(stage_from_row(row))
        except (ValueError, TypeError) as err:
            bad.setdefault(row["run_id"], err)
    found = []
    for row in runs:
        run_id = row["run_id"]
        try:
            if run_id in bad:
                raise bad[run_id]
            found.append((row, run_from_row(row, tuple(stages.get(run_id, ())))))
        except (ValueError, TypeError) as err:
            damaged(str(run_id), err)
    return found


def run_from_row(row: sqlite3.Row, stages: tuple[StageStatus, ...]) -> RunStatus:
    """A run's status (its result released) from its row and its stages."""
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
