"""Schema v2 of the run history: its upgrade from v1, the write sequence a dashboard
follows, and Cancels carried through the database to the run's owner."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import WAIT_S

import stagewidget as sw
from stagewidget import RunState
from stagewidget.durable import db, history
from stagewidget.durable.cancels import pending_cancels
from stagewidget.durable.reader import HistoryReader
from stagewidget.durable.records import SCHEMA_VERSION, open_db, write_run

V1_SCHEMA = """
CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
INSERT INTO schema_version VALUES ('history', 1);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, state TEXT NOT NULL,
    current INTEGER, created_at REAL, started_at REAL, finished_at REAL, updated_at REAL,
    elapsed_s REAL, retry_of TEXT, error_type TEXT, error_message TEXT,
    error_traceback TEXT, error_stage TEXT, owner TEXT NOT NULL, owner_started TEXT);
CREATE INDEX runs_by_time ON runs (created_at);
CREATE TABLE stages (
    run_id TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL,
    state TEXT NOT NULL, done INTEGER, total INTEGER, started_at REAL, finished_at REAL,
    elapsed_s REAL, expected_s REAL, fingerprint TEXT, metrics TEXT,
    PRIMARY KEY (run_id, position));
INSERT INTO runs VALUES ('old-run', 'legacy', 'succeeded', NULL, 1.0, 1.0, 2.0, 2.0, 1.0,
    NULL, NULL, NULL, NULL, NULL, 'elsewhere:1', NULL);
INSERT INTO stages VALUES ('old-run', 0, 'only', 'succeeded', 3, 3, 1.0, 2.0, 1.0, 1.0,
    'fp', '{"loss": 0.5}');
"""


def test_a_v1_history_opens_upgraded_with_its_runs_kept(home: Path) -> None:
    home.mkdir()
    with sqlite3.connect(home / "history.sqlite3") as conn:
        conn.executescript(V1_SCHEMA)
    [old] = sw.history()  # opening upgrades it
    assert (old.run_id, old.pipeline, old.state) == ("old-run", "legacy", RunState.SUCCEEDED)
    assert old.stages[0].metrics == {"loss": 0.5}
    with sqlite3.connect(home / "history.sqlite3") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)]
        assert conn.execute("SELECT run_id, seq FROM runs").fetchall() == [("old-run", 1)]
        assert conn.execute("SELECT * FROM cancels").fetchall() == []
    sw.Pipeline("new", [lambda: 1]).run(display=False)
    assert history.flush(WAIT_S)
    with sqlite3.connect(home / "history.sqlite3") as conn:  # later writes number after
        assert conn.execute("SELECT pipeline FROM runs ORDER BY seq").fetchall() == [
            ("legacy",), ("new",)]


def test_a_schema_step_that_is_missing_is_refused_naming_the_versions(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "x.sqlite3")
    db.ensure_schema(conn, "things", 1, "CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    with pytest.raises(sw.ConfigError, match=r"schema version 1, which this stagewidget "
                                             r"cannot upgrade \(from 1 to 2\)"):
        db.ensure_schema(conn, "things", 3, "", {2: "SELECT 1"})
    db.ensure_schema(conn, "things", 3, "", {1: "ALTER TABLE t ADD COLUMN y",
                                             2: "ALTER TABLE t ADD COLUMN z"})
    assert [r[1] for r in conn.execute("PRAGMA table_info(t)")] == ["x", "y", "z"]
    conn.close()
    assert SCHEMA_VERSION == 3


def test_changes_follow_the_order_of_writes_not_the_owners_clocks(home: Path) -> None:
    reader = HistoryReader()
    assert reader.changes() == []  # no database yet: every write to come is a change
    sw.Pipeline("first", [lambda: 1]).run(display=False)
    assert history.flush(WAIT_S)
    assert [s.pipeline for _, s in reader.changes()] == ["first"]
    assert reader.changes() == []
    reader.restart()  # from the latest write on
    assert reader.changes() == []
    late = sw.Pipeline("late", [lambda: 1], history=False).start(display=False).wait(WAIT_S)
    conn = open_db(home / "history.sqlite3")
    # written now, by an owner whose clock is an hour behind: still a change
    write_run(conn, replace(late, updated_at=late.updated_at - 3600), ())
    conn.close()
    [(seq, status)] = reader.changes()
    assert status.pipeline == "late" and seq > 1
    assert reader.changes() == []
    reader.close()


def test_a_cancel_asked_through_the_database_cancels_the_owners_run(home: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def held():
        for _ in sw.track(range(10**9)):  # Cancel raises here
            started.set()
            release.wait(0.05)  # pacing: a step every 50 ms

    run = sw.Pipeline("held", [held]).start(display=False)
    try:
        assert started.wait(WAIT_S) and history.flush(WAIT_S)
        conn = open_db(home / "history.sqlite3")
        conn.execute("INSERT INTO cancels VALUES ('another-process-run', ?)",
                     (run.status().created_at,))
        reader = HistoryReader()
        _, status = reader.cancel(run.run_id)
        assert status.state is RunState.RUNNING
        assert run.wait(WAIT_S).state is RunState.CANCELLED  # the writer took it
        assert history.flush(WAIT_S)  # its final state: written after the request's delete
        # taken, then deleted; another process's request is left for its owner
        assert pending_cancels(conn) == {"another-process-run"}
        conn.close()
        [(_, recorded)] = reader.runs()
        assert recorded.state is RunState.CANCELLED
        with pytest.raises(sw.InvalidTransition, match=r"has already ended \(cancelled\)"):
            reader.cancel(run.run_id)
        with pytest.raises(sw.RunNotFound, match=r"no run with id 'nope' in the run history"):
            reader.cancel("nope")
        reader.close()
    finally:
        release.set()
        run.cancel()
