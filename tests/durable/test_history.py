"""The run history in one process: what is recorded, how it reads back, how it is turned off."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import WAIT_S, join_stagewidget_threads

import stagewidget as sw
from stagewidget import RunState, RunStatus, StageState, StageStatus
from stagewidget.durable import history
from stagewidget.durable import writer as writer_module
from stagewidget.durable.fingerprint import stage_fingerprint


def load():
    sw.report(rows=3, source="memory")
    return [1, 2, 3]


def total(rows):
    return sum(rows)


def broken(rows):
    raise ValueError("row 2 is\nnot a number")


def db_rows(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(home / "history.sqlite3") as conn:
        return conn.execute(sql).fetchall()


def test_a_run_is_recorded_with_its_stages_metrics_and_fingerprints(home: Path) -> None:
    run = sw.Pipeline("sums", [load, total]).start(display=False)
    assert run.result(WAIT_S) == 6
    [recorded] = sw.history()
    assert (recorded.run_id, recorded.pipeline, recorded.state) == \
        (run.run_id, "sums", RunState.SUCCEEDED)
    assert [(s.name, s.state) for s in recorded.stages] == \
        [("load", StageState.SUCCEEDED), ("total", StageState.SUCCEEDED)]
    assert dict(recorded.stages[0].metrics) == {"rows": 3, "source": "memory"}
    live = run.status()
    assert recorded.finished_at == live.finished_at and recorded.elapsed_s == live.elapsed_s
    assert recorded.stages[1].elapsed_s == live.stages[1].elapsed_s
    assert recorded.result is None and recorded.result_released  # never recorded
    assert recorded.to_dict()["result_unavailable"].startswith("released")
    assert db_rows(home, "SELECT fingerprint FROM stages ORDER BY position") == \
        [(stage_fingerprint(load, values=False),), (stage_fingerprint(total, values=False),)]
    [(owner, started)] = db_rows(home, "SELECT owner, owner_started FROM runs")
    assert owner.endswith(f":{os.getpid()}") and started is not None


def test_a_failed_run_records_its_error_summary(home: Path) -> None:
    run = sw.Pipeline("sums", [load, broken]).start(display=False)
    assert run.wait(WAIT_S).state is RunState.FAILED
    [recorded] = sw.history()
    assert recorded.state is RunState.FAILED
    error = recorded.error
    assert (error.type, error.message, error.stage) == ("ValueError", "row 2 is\nnot a number",
                                                       "broken")
    assert "in broken" in error.traceback and error.exception is None
    assert [s.state for s in recorded.stages] == [StageState.SUCCEEDED, StageState.FAILED]


def test_history_is_newest_first_by_pipeline_and_limited(home: Path) -> None:
    sums, other = sw.Pipeline("sums", [load, total]), sw.Pipeline("other", [load])
    runs = [pipe.start(display=False) for pipe in (sums, other, sums, sums)]
    for run in runs:
        run.wait(WAIT_S)
    assert [s.run_id for s in sw.history()] == [r.run_id for r in reversed(runs)]
    assert [s.run_id for s in sw.history(sums, limit=2)] == [runs[3].run_id, runs[2].run_id]
    assert [s.run_id for s in sw.history("other")] == [runs[1].run_id]
    assert sw.history("nothing-like-it") == []


def test_history_before_any_run_is_empty_and_creates_nothing(home: Path) -> None:
    assert sw.history() == []
    assert not home.exists()


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "10"])
def test_history_refuses_a_bad_limit(limit: object) -> None:
    with pytest.raises(sw.ConfigError, match=f"limit must be a positive int \\(got {limit!r}\\)"):
        sw.history(limit=limit)


def test_history_refuses_a_pipeline_that_is_not_one() -> None:
    with pytest.raises(sw.ConfigError, match="pipeline must be a Pipeline, its name or None "
                                             r"\(got 3\)"):
        sw.history(3)


def test_history_false_writes_nothing(home: Path) -> None:
    run = sw.Pipeline("quiet", [load, total], history=False).start(display=False)
    assert run.result(WAIT_S) == 6
    join_stagewidget_threads()
    assert not home.exists()
    assert sw.history() == []


@pytest.mark.parametrize("value", ["0", "off", " False "])
def test_the_environment_switch_turns_recording_off(home: Path, monkeypatch, value) -> None:
    monkeypatch.setenv("STAGEWIDGET_HISTORY", value)
    assert sw.Pipeline("quiet", [load, total]).start(display=False).result(WAIT_S) == 6
    join_stagewidget_threads()
    assert not home.exists()


def test_a_bad_history_argument_is_refused_naming_it() -> None:
    with pytest.raises(sw.PipelineError, match=r"pipeline 'p' history must be True or False "
                                               r"\(got 'no', a str\)"):
        sw.Pipeline("p", [load], history="no")


def test_a_bad_environment_switch_is_refused_naming_it(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("STAGEWIDGET_HISTORY", "maybe")
    with pytest.raises(sw.ConfigError, match=r"STAGEWIDGET_HISTORY='maybe' is not a switch; "
                                             r"set it to 1 .* or 0"):
        sw.Pipeline("p", [load]).start(display=False)
    assert not home.exists()


def test_a_read_only_data_folder_logs_once_and_runs_succeed(monkeypatch, tmp_path, caplog
                                                            ) -> None:
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: use a read-only fs
        folder = Path("/proc/self")
    else:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o500)
    monkeypatch.setenv("STAGEWIDGET_HOME", str(folder))
    pipe = sw.Pipeline("sums", [load, total])
    with caplog.at_level(logging.WARNING, logger="stagewidget.history"):
        for _ in range(3):
            assert pipe.start(display=False).result(WAIT_S) == 6
            assert history.flush(WAIT_S)
    warnings = [r.getMessage() for r in caplog.records if r.name == "stagewidget.history"]
    assert len(warnings) == 1, warnings
    assert "run history is off for this process: cannot write" in warnings[0]
    assert "runs go on unrecorded" in warnings[0]
    assert not (folder / "history.sqlite3").exists()


def test_runs_shows_recorded_runs_below_the_live_ones(home: Path) -> None:
    live = sw.Pipeline("sums", [load, total]).start(display=False)
    live.wait(WAIT_S)
    recorded_only = sw.RunStatus("0123abcd-" + "0" * 27, "elsewhere", RunState.RUNNING,
                                 (sw.StageStatus("step", StageState.RUNNING),),
                                 current=0, created_at=1.0)
    history.RunRecorder(history.history_path(), ())(recorded_only)
    assert history.flush(WAIT_S)
    listed = sw.runs()
    assert live in listed and [s.run_id for s in listed.history] == [recorded_only.run_id]
    assert listed.history[0].state is RunState.RUNNING  # its owner (this process) lives
    text = repr(listed)
    assert text.index(live.run_id[:8]) < text.index("history: 1 earlier run(s)") < \
        text.index("0123abcd")


def test_odd_text_is_recorded_escaped_and_recording_goes_on(home: Path, caplog) -> None:
    def odd(rows):
        sw.report(note="\udcff")
        raise ValueError("bad byte \udcff")

    name = "odd \udcfe pipeline"
    with caplog.at_level(logging.WARNING, logger="stagewidget.history"):
        assert sw.Pipeline(name, [load, odd]).start(display=False).wait(WAIT_S).state is \
            RunState.FAILED
        assert sw.Pipeline("sums", [load, total]).start(display=False).result(WAIT_S) == 6
        recorded = sw.history()
    assert caplog.records == []  # nothing logged: nothing was refused
    assert [s.pipeline for s in recorded] == ["sums", "odd \\udcfe pipeline"]
    assert recorded[1].error.message == "bad byte \\udcff"
    assert dict(recorded[1].stages[1].metrics) == {"note": "\udcff"}  # JSON escapes it


def test_the_runs_widget_lists_recorded_runs_in_a_table_of_their_own(home: Path) -> None:
    from stagewidget.views.table import RunsWidget

    assert sw.Pipeline("sums", [load, broken]).start(display=False).wait(WAIT_S).done()
    [recorded] = sw.history()
    table = RunsWidget([], [recorded])
    html = table.widget.children[-1].value
    assert "history: 1 earlier run(s)" in html and recorded.run_id[:8] in html
    assert "ValueError in broken: row 2 is not a number" in html


def test_a_recorded_run_has_no_observer_and_its_progress_is_written_while_it_runs(
        home: Path) -> None:
    # the writer samples the run itself: recording adds no work to the delivery thread
    gate, seen = threading.Event(), threading.Event()

    def held():
        for i in sw.track(range(10), desc="rows"):
            if i == 4:
                seen.set()
                gate.wait(WAIT_S)

    run = sw.Pipeline("held", [held]).start(display=False)
    try:
        assert seen.wait(WAIT_S)
        assert run._notifier._observers == []
        history.flush(WAIT_S)  # samples the running run, then writes it
        [recorded] = sw.history()
        assert recorded.state is RunState.RUNNING and recorded.stages[0].done == 5
    finally:
        gate.set()
    run.wait(WAIT_S)
    assert [r.state for r in sw.history()] == [RunState.SUCCEEDED]


def test_a_followed_run_is_written_again_only_when_it_changed(
        tmp_path: Path, monkeypatch) -> None:
    written: list[int] = []
    monkeypatch.setattr(writer_module, "write_run",
                        lambda conn, status, fps: written.append(status.stages[0].done))
    state = {"done": 1, "samples": 0}
    sampled = threading.Condition()

    def sample() -> RunStatus:
        with sampled:
            state["samples"] += 1
            sampled.notify_all()
        stage = StageStatus("a", state=StageState.RUNNING, done=state["done"], total=9)
        return RunStatus("r", "p", state=RunState.RUNNING, current=0, stages=(stage,))

    def samples_reach(count: int) -> None:
        with sampled:
            assert sampled.wait_for(lambda: state["samples"] >= count, WAIT_S)

    writer = writer_module.HistoryWriter(interval_s=0.01)
    writer.follow(tmp_path / "h.sqlite3", sample(), (None,), sample)
    samples_reach(8)
    assert written == [1]  # sampled again and again, written once
    state["done"] = 7
    samples_reach(state["samples"] + 3)
    final = replace(sample(), state=RunState.SUCCEEDED)
    writer.offer(tmp_path / "h.sqlite3", final, (None,))
    assert writer.flush(WAIT_S)
    assert written == [1, 7, 7]  # the change, then the final state


def test_a_busy_database_is_retried_quietly_and_reported_only_if_it_stays_busy(
        tmp_path: Path, monkeypatch, caplog) -> None:
    refusals = {"left": 2}
    written: list[str] = []

    def write_run(conn, status, fps) -> None:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise sqlite3.OperationalError("database is locked")
        written.append(status.run_id)

    monkeypatch.setattr(writer_module, "write_run", write_run)
    final = RunStatus("r", "p", state=RunState.SUCCEEDED)
    writer = writer_module.HistoryWriter(interval_s=0.01)
    with caplog.at_level(logging.WARNING, logger="stagewidget.history"):
        writer.offer(tmp_path / "h.sqlite3", final, ())
        assert writer.flush(WAIT_S)
        assert written == ["r"] and not caplog.records  # two refusals: retried, not said
        refusals["left"] = 10**6
        writer.offer(tmp_path / "h.sqlite3", replace(final, run_id="s"), ())
        assert not writer.flush(0.5)  # still refused
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == \
        [f"run history {tmp_path / 'h.sqlite3'} is busy"]
    refusals["left"] = 0  # let the writer finish before the next test
    assert writer.flush(WAIT_S) and written == ["r", "s"]


@pytest.mark.parametrize("tamper", [
    "UPDATE runs SET state = 'from-a-newer-version' WHERE run_id = ?",
    "UPDATE stages SET state = 'odd' WHERE run_id = ?"])
def test_a_row_that_cannot_be_read_is_left_out_and_said_once(
        home: Path, caplog: pytest.LogCaptureFixture, tamper: str) -> None:
    pipe = sw.Pipeline("sums", [load, total])
    odd, fine = (pipe.start(display=False).wait(WAIT_S).run_id for _ in range(2))
    assert history.flush(WAIT_S)
    with sqlite3.connect(home / "history.sqlite3") as conn:
        assert conn.execute(tamper, (odd,)).rowcount >= 1
    with caplog.at_level(logging.WARNING, "stagewidget.history"):
        assert [s.run_id for s in sw.history()] == [fine]
        assert [s.run_id for s in sw.history()] == [fine]
    said = [r.getMessage() for r in caplog.records if odd in r.getMessage()]
    assert len(said) == 1 and "cannot be read and is left out (ValueError" in said[0]


def test_metrics_nested_past_what_python_reads_read_as_none(home: Path) -> None:
    sw.Pipeline("sums", [load, total]).run(display=False)
    assert history.flush(WAIT_S)
    with sqlite3.connect(home / "history.sqlite3") as conn:
        conn.execute("UPDATE stages SET metrics = ? WHERE position = 0",
                     ('{"a": ' * 100_000 + "1" + "}" * 100_000,))
    [read] = sw.history()
    assert dict(read.stages[0].metrics) == {} and read.state is RunState.SUCCEEDED
