"""The run history across processes: a killed process's run reads as lost, and several
processes write one database at once without errors or lost records."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import WAIT_S

import stagewidget as sw
from stagewidget import RunState, StageState

KILLED = textwrap.dedent("""
    import sys, threading
    import stagewidget as sw
    from stagewidget.durable import history

    def prepare():
        return 1

    def hang(x):
        threading.Event().wait()  # until the process is killed

    recorded = threading.Event()
    run = sw.Pipeline("doomed", [prepare, hang]).start(display=False)
    # flush() samples the run, so what it writes is its state now: stage 2 running
    run.subscribe(lambda s: s.stages[1].state.value == "running" and recorded.set())
    assert recorded.wait(20) and history.flush(20)
    print(run.run_id, flush=True)
    threading.Event().wait()
""")

MANY = textwrap.dedent("""
    import sys
    import stagewidget as sw
    from stagewidget.durable import history

    def first(x):
        return x + 1

    def second(x):
        sw.report(seen=x)
        return 2 * x

    pipe = sw.Pipeline("busy", [first, second])
    for i in range(100):
        assert pipe.start(i, display=False).result(20) == 2 * (i + 1)
    assert history.flush(20)
""")


ENDING = textwrap.dedent("""
    import stagewidget as sw

    def work():
        sw.report(answer=42)
        return 42

    sw.Pipeline("brief", [work]).start(display=False)  # the script ends at once
""")


def child(script: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "STAGEWIDGET_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-c", script], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_killed_process_run_reads_as_lost_and_the_database_is_intact(home: Path) -> None:
    proc = child(KILLED, home)
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, proc.stderr.read()
        [before] = sw.history()
        assert (before.run_id, before.state) == (run_id, RunState.RUNNING)  # it still lives
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=WAIT_S)
    [lost] = sw.history()
    assert (lost.run_id, lost.pipeline, lost.state) == (run_id, "doomed", RunState.LOST)
    assert lost.done() and lost.eta_s == 0.0
    assert [s.state for s in lost.stages] == [StageState.SUCCEEDED, StageState.RUNNING]
    with sqlite3.connect(home / "history.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT state FROM runs").fetchall() == [("lost",)]  # recorded so


def test_two_processes_record_a_hundred_runs_each_in_one_database(home: Path) -> None:
    procs = [child(MANY, home) for _ in range(2)]
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outcomes
    assert not any("history" in err for _, err in outcomes), outcomes  # nothing logged
    with sqlite3.connect(home / "history.sqlite3") as conn:
        assert conn.execute("SELECT state, count(*), count(DISTINCT owner) FROM runs "
                            "GROUP BY state").fetchall() == [("succeeded", 200, 2)]
        assert conn.execute("SELECT count(*) FROM stages WHERE state = 'succeeded'"
                            ).fetchall() == [(400,)]
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert len(sw.history("busy", limit=1000)) == 200


def test_a_script_ending_during_its_run_has_the_final_state_recorded(home: Path) -> None:
    proc = child(ENDING, home)
    _out, err = proc.communicate(timeout=WAIT_S * 2)
    assert proc.returncode == 0, err
    [recorded] = sw.history()
    assert (recorded.pipeline, recorded.state) == ("brief", RunState.SUCCEEDED)
    assert dict(recorded.stages[0].metrics) == {"answer": 42}
