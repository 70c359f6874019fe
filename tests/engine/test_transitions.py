"""Every change of a run goes through one checked move: observers see only table steps."""

from __future__ import annotations

import threading
from itertools import pairwise

import pytest
from conftest import WAIT_S, Gate, Recorder, join_stagewidget_threads

import stagewidget as sw
from stagewidget import InvalidTransition, RunState, StageState
from stagewidget.engine import output as stage_output
from stagewidget.status import check_run_transition, check_stage_transition


def assert_table_steps(snapshots: list[sw.RunStatus]) -> None:
    """Each step between snapshots is allowed by the table; a failed stage carries its
    error in the very snapshot where it failed; ended stages and runs have end times."""
    for before, after in pairwise(snapshots):
        if before.state is not after.state:
            check_run_transition(before.state, after.state)
        for old, new in zip(before.stages, after.stages, strict=True):
            if old.state is not new.state:
                check_stage_transition(old.name, old.state, new.state)
            if new.state is StageState.FAILED and old.state is not StageState.FAILED:
                assert after.error is not None, f"stage {new.name} failed without its error"
                assert after.error.stage in (new.name, None)
                assert after.error.exception is not None
    for status in snapshots:
        for stage in status.stages:
            if stage.state.terminal:
                assert stage.finished_at is not None, stage
        if status.state.terminal:
            assert status.finished_at is not None


def same(x):
    return x


def one(x):
    return 1


def plus_one(x):
    return x + 1


def recorded(pipe: sw.Pipeline, data=None, **options) -> tuple[sw.Run, Recorder]:
    recorder = Recorder()
    run = pipe.start(data, display=recorder, refresh_hz=200, **options)
    run.wait(WAIT_S)
    recorder.wait_for(lambda s: s.done())
    return run, recorder


def test_a_succeeding_run_moves_only_along_the_table() -> None:
    _, recorder = recorded(sw.Pipeline("ok", [one, plus_one]))
    assert_table_steps(recorder.snapshots)
    assert recorder.last.state is RunState.SUCCEEDED
    assert recorder.last.result == 2


def test_a_failed_stage_carries_its_error_in_the_snapshot_where_it_fails() -> None:
    def boom(x):
        raise ValueError("broke")

    run, recorder = recorded(sw.Pipeline("bad", [same, boom, plus_one]))
    assert_table_steps(recorder.snapshots)
    first_failed = next(s for s in recorder.snapshots if s.stages[1].state is StageState.FAILED)
    assert first_failed.error.message == "broke"
    assert first_failed.error.exception is run.exception()
    assert [s.state.value for s in recorder.last.stages] == ["succeeded", "failed", "skipped"]


def test_cancel_before_a_stage_starts_is_one_step_to_cancelled() -> None:
    pipe = sw.Pipeline("p", [same, plus_one])
    recorder = Recorder()
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=200,
                 clock=lambda: 5.0)
    run.subscribe(recorder)
    run.cancel()
    run.launch()
    run.wait(WAIT_S)
    recorder.wait_for(lambda s: s.done())
    assert_table_steps(recorder.snapshots)
    assert [s.state.value for s in recorder.last.stages] == ["cancelled", "skipped"]
    # no snapshot shows a stage cancelled while the run still runs
    assert all(s.done() for s in recorder.snapshots
               if any(st.state is StageState.CANCELLED for st in s.stages))


def test_cancel_while_a_stage_runs_moves_only_along_the_table() -> None:
    gate = Gate()

    def waits(x):
        gate.block()
        sw.advance()  # the cancel lands here
        return x

    recorder = Recorder()
    run = sw.Pipeline("p", [waits, same]).start(1, display=recorder, refresh_hz=200)
    gate.wait_reached()
    run.cancel()
    gate.open()
    assert run.wait(WAIT_S).state is RunState.CANCELLED
    recorder.wait_for(lambda s: s.done())
    assert_table_steps(recorder.snapshots)
    assert [s.state.value for s in recorder.last.stages] == ["cancelled", "skipped"]


def test_an_engine_error_fails_the_running_stage_with_checked_moves(monkeypatch) -> None:
    def broken_install() -> None:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(stage_output, "install", broken_install)
    _, recorder = recorded(sw.Pipeline("p", [same, plus_one]))
    assert_table_steps(recorder.snapshots)
    final = recorder.last
    assert final.state is RunState.FAILED
    assert [s.state.value for s in final.stages] == ["failed", "skipped"]
    assert final.error.message == "engine bug" and final.error.stage is None
    assert "stagewidget" in final.error.traceback  # all frames are ours: all are shown
    assert all(s.finished_at is not None for s in final.stages)


def test_a_retry_starts_from_its_done_stages_and_moves_along_the_table() -> None:
    calls = []

    def flaky(x):
        calls.append(x)
        if len(calls) == 1:
            raise ValueError("first time")
        return x * 10

    pipe = sw.Pipeline("p", [plus_one, flaky])
    first, _ = recorded(pipe, 1)
    recorder = Recorder()
    again = first.retry(display=recorder, refresh_hz=200)
    assert again.result(WAIT_S) == 20
    recorder.wait_for(lambda s: s.done())
    assert_table_steps(recorder.snapshots)
    assert all(s.stages[0].state is StageState.SUCCEEDED for s in recorder.snapshots)


def test_a_move_the_table_forbids_raises_and_changes_nothing() -> None:
    pipe = sw.Pipeline("p", [lambda x: x])
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=10,
                 clock=lambda: 0.0)
    before = run.status()
    with pytest.raises(InvalidTransition, match="from 'pending' to 'succeeded'"):
        run._move_to(RunState.SUCCEEDED, result=1)
    assert run.status() == before and run.status().result is None
    run._move_to(RunState.RUNNING)
    run._move_to(current=0, stages={0: StageState.RUNNING})
    before = run.status()
    with pytest.raises(InvalidTransition, match="cannot fail without an error"):
        run._move_to(stages={0: StageState.FAILED})
    assert run.status() == before and run.status().error is None


def test_checker_rejects_a_failed_stage_whose_error_comes_later() -> None:
    stage = sw.StageStatus("s", StageState.RUNNING)
    running = sw.RunStatus("x", "p", RunState.RUNNING, (stage,))
    failed = sw.RunStatus("x", "p", RunState.RUNNING,
                          (sw.StageStatus("s", StageState.FAILED, finished_at=1.0),))
    with pytest.raises(AssertionError, match="failed without its error"):
        assert_table_steps([running, failed])


@pytest.fixture(autouse=True)
def _no_threads_left():
    yield
    join_stagewidget_threads()
    assert not [t for t in threading.enumerate() if t.name.startswith("stagewidget-run")]
