"""How much history is kept: pruning as runs end, ``sw.clear_history()``, the write order."""

from __future__ import annotations

import socket
import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import WAIT_S

import stagewidget as sw
from stagewidget import RunState
from stagewidget.durable import history
from stagewidget.durable.reader import HistoryReader


def one() -> int:
    return 1


def run_times(name: str, n: int) -> list[str]:
    pipe = sw.Pipeline(name, [one])
    return [pipe.start(display=False).wait(WAIT_S).run_id for _ in range(n)]


def db_rows(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(home / "history.sqlite3") as conn:
        return conn.execute(sql).fetchall()


def test_each_pipeline_keeps_its_newest_finished_runs_as_runs_end(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEWIDGET_HISTORY_KEEP", "3")
    other = run_times("other", 1)
    ids = run_times("kept", 5)
    assert history.flush(WAIT_S)
    assert [s.run_id for s in sw.history("kept")] == ids[:-4:-1]  # the newest three
    assert [s.run_id for s in sw.history("other")] == other  # another pipeline's count
    assert db_rows(home, "SELECT count(*) FROM stages") == [(4,)]  # stages go with runs


def test_clear_history_removes_finished_runs_and_keeps_running_ones(home: Path) -> None:
    gate, started = threading.Event(), threading.Event()

    def held() -> None:
        started.set()
        gate.wait(WAIT_S)

    run_times("done", 3)
    other = run_times("other", 2)
    live = sw.Pipeline("done", [held]).start(display=False)
    try:
        assert started.wait(WAIT_S)
        assert sw.clear_history("done", keep=1) == 2
        assert [s.state for s in sw.history("done")] == [RunState.RUNNING, RunState.SUCCEEDED]
        assert sw.clear_history(sw.Pipeline("done", [one])) == 1  # by pipeline, keep=0
        assert [s.run_id for s in sw.history("done")] == [live.run_id]
    finally:
        gate.set()
    live.wait(WAIT_S)
    assert history.flush(WAIT_S)
    [ended] = sw.history("done")  # its end is still recorded after the clear
    assert (ended.run_id, ended.state) == (live.run_id, RunState.SUCCEEDED)
    assert [s.run_id for s in sw.history("other")] == other[::-1]
    assert sw.clear_history() == 3
    assert sw.history() == [] and db_rows(home, "SELECT count(*) FROM stages") == [(0,)]
    assert sw.clear_history() == 0


def test_a_run_whose_process_died_is_cleared_as_lost(home: Path) -> None:
    gate = threading.Event()
    run = sw.Pipeline("doomed", [lambda: gate.wait(WAIT_S)]).start(display=False)
    try:
        assert history.flush(WAIT_S)
        with sqlite3.connect(home / "history.sqlite3") as conn:  # as if its process died
            conn.execute("UPDATE runs SET owner = ?, owner_started = NULL",
                         (f"{socket.gethostname()}:4194999",))
        assert sw.clear_history() == 1
        assert db_rows(home, "SELECT count(*) FROM runs") == [(0,)]
    finally:
        gate.set()
        run.wait(WAIT_S)


def test_writes_after_a_clear_still_number_after_every_write_a_reader_saw(home: Path) -> None:
    run_times("a", 2)
    assert history.flush(WAIT_S)
    reader = HistoryReader()
    reader.restart()  # cursor: the newest write, which the clear removes
    assert sw.clear_history() == 2
    [new] = run_times("a", 1)
    assert history.flush(WAIT_S)
    assert [seen[1].run_id for seen in reader.changes()] == [new]
    reader.close()


def test_clear_history_forgets_the_durations_it_removed(home: Path) -> None:
    gate = threading.Event()
    gate.set()

    def step() -> None:
        gate.wait(WAIT_S)

    pipe = sw.Pipeline("eta", [step])
    pipe.start(display=False).wait(WAIT_S)
    assert history.flush(WAIT_S)
    gate.clear()  # no run ends from here on: the durations read next stay memoised
    held = pipe.start(display=False)
    try:
        assert held.status().stages[0].expected_s is not None
        assert sw.clear_history(pipe) == 1
        assert pipe.start(display=False).status().stages[0].expected_s is None
    finally:
        gate.set()
    held.wait(WAIT_S)


@pytest.mark.parametrize(("value", "match"), [("many", "'many' is not a whole number"),
                                              ("-1", "'-1' is not a whole number")])
def test_a_bad_keep_setting_is_said_when_a_run_starts(
        home: Path, monkeypatch: pytest.MonkeyPatch, value: str, match: str) -> None:
    monkeypatch.setenv("STAGEWIDGET_HISTORY_KEEP", value)
    with pytest.raises(sw.ConfigError, match=f"STAGEWIDGET_HISTORY_KEEP={match}"):
        sw.Pipeline("p", [one]).start(display=False)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"pipeline": 42}, "clear_history takes a pipeline, a pipeline name or None"),
    ({"pipeline": " "}, "clear_history takes a pipeline, a pipeline name or None"),
    ({"keep": -1}, r"keep must be an int >= 0 \(got -1\)"),
    ({"keep": True}, r"keep must be an int >= 0 \(got True\)"),
    ({"keep": 1.5}, r"keep must be an int >= 0 \(got 1.5\)")])
def test_clear_history_refuses_bad_arguments(home: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(sw.ConfigError, match=match):
        sw.clear_history(**kwargs)
