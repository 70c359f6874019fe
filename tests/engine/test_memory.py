"""Results and exceptions live on the Run: snapshots and the recent-runs list do not pin them."""

from __future__ import annotations

import gc
import weakref

from conftest import WAIT_S, Recorder, join_stagewidget_threads

import stagewidget as sw
from stagewidget import RunState
from stagewidget.engine.run import KEPT_RUNS, recent_runs


class Big:
    """Stands for a large result (a model, an array); weakly referenceable."""


class Broke(ValueError):
    """A stage's own exception (ValueError itself cannot be weakly referenced)."""


def make(x):
    return Big()


def fails_holding(x):
    local = Big()  # reachable only through the traceback's frame
    holder["local"] = weakref.ref(local)
    raise Broke("broke")


holder: dict[str, weakref.ref] = {}


def noop(x):
    return x


def newer_runs() -> None:
    """Start (and forget) as many runs as the recent-runs list holds strongly."""
    pipe = sw.Pipeline("filler", [noop])
    for _ in range(KEPT_RUNS):
        pipe.start(None, display=False).wait(WAIT_S)
    join_stagewidget_threads()  # the runs' notifier threads end once delivered
    gc.collect()


def started(pipe: sw.Pipeline, recorder: Recorder) -> tuple[sw.RunStatus, weakref.ref]:
    """Run ``pipe`` with an observer that keeps every snapshot; return its final one and
    a weak reference to the run (the run itself is not kept)."""
    run = pipe.start(None, display=recorder)
    run.wait(WAIT_S)
    recorder.wait_for(lambda s: s.done())
    return run.status(), weakref.ref(run)


def test_an_unkept_result_is_freed_after_five_newer_runs() -> None:
    recorder = Recorder()  # an observer keeping every snapshot it got, like a view
    final, run = started(sw.Pipeline("big", [make]), recorder)
    result = weakref.ref(final.result)
    assert run() in recent_runs()
    newer_runs()
    assert run() is None
    assert result() is None
    assert final.result is None and final.result_released
    assert final.to_dict()["result_unavailable"].startswith("released")
    assert recorder.last.state is RunState.SUCCEEDED  # the snapshots themselves stay


def test_a_held_run_keeps_its_result() -> None:
    run = sw.Pipeline("big", [make]).start(None, display=False)
    result = weakref.ref(run.result(WAIT_S))
    newer_runs()
    assert result() is not None
    assert run.result() is result() and run.status().result is result()
    assert not run.status().result_released
    assert run in recent_runs()  # older than the kept five, but alive: listed


def test_an_unkept_failed_stage_frees_its_exception_and_its_frames_locals() -> None:
    recorder = Recorder()
    final, run = started(sw.Pipeline("bad", [fails_holding]), recorder)
    exception = weakref.ref(final.error.exception)
    assert holder["local"]() is not None  # the traceback's frame holds it
    newer_runs()
    assert run() is None
    assert exception() is None and holder["local"]() is None
    assert final.error.exception is None
    assert final.error.message == "broke" and "fails_holding" in final.error.traceback


def test_a_held_failed_run_keeps_its_exception() -> None:
    run = sw.Pipeline("bad", [fails_holding]).start(None, display=False)
    run.wait(WAIT_S)
    newer_runs()
    exc = run.exception()
    assert isinstance(exc, Broke) and str(exc) == "broke"
    assert run.status().error.exception is exc
    assert holder["local"]() is not None
