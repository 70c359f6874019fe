"""User code called from engine threads (observers, done-callbacks, run-start listeners)
can raise anything, ``BaseException`` included, without stopping the run or its deliveries."""

from __future__ import annotations

import logging
import sys
import threading

import pytest
from conftest import WAIT_S, Recorder, join_stagewidget_threads

import stagewidget as sw
from stagewidget import RunState
from stagewidget.engine.run import on_run_start


def held_run(gate: threading.Event, started: threading.Event) -> sw.Run:
    def hold(x):
        started.set()
        for _ in sw.track(iter(int, 1)):  # endless until cancelled or the gate opens
            if gate.is_set():
                break
        return x

    return sw.Pipeline("held", [hold]).start(1, display=False)


def exit_now(status: sw.RunStatus) -> None:
    sys.exit(3)


@pytest.mark.parametrize("how", ["result-of-cancelled-run", "sys.exit", "base-exception"])
def test_observer_raising_base_exception_does_not_stop_delivery(caplog, recorder: Recorder,
                                                                how: str) -> None:
    gate, started = threading.Event(), threading.Event()
    run = held_run(gate, started)
    assert started.wait(WAIT_S)

    def hostile(status: sw.RunStatus) -> None:
        if how == "result-of-cancelled-run":
            if status.done():
                run.result()  # raises sw.Cancelled, a BaseException
        elif how == "sys.exit":
            sys.exit(3)
        else:
            raise BaseException("no")

    with caplog.at_level(logging.ERROR, logger="stagewidget"):
        run.subscribe(hostile)  # first, so it is called before the recorder each time
        run.subscribe(recorder)
        run.cancel()
        final = recorder.wait_for(lambda s: s.done())
    assert final.state is RunState.CANCELLED
    # the notifier thread reached its normal end (it did not die in the observer), so a
    # later wait()/result() needs no delivery grace: the final status was handed out
    assert run._notifier.flush(0)
    assert run.wait(WAIT_S).state is RunState.CANCELLED
    assert any("observer" in r.getMessage() and "failed" in r.getMessage()
               for r in caplog.records)
    join_stagewidget_threads()


def test_observer_raising_base_exception_keeps_getting_later_snapshots(recorder: Recorder
                                                                       ) -> None:
    calls = []

    def hostile(status: sw.RunStatus) -> None:
        calls.append(status.state)
        raise SystemExit(1)

    gate, started = threading.Event(), threading.Event()
    run = held_run(gate, started)
    assert started.wait(WAIT_S)
    run.subscribe(hostile)
    run.subscribe(recorder)
    gate.set()
    assert run.result(WAIT_S) == 1
    recorder.wait_for(lambda s: s.state is RunState.SUCCEEDED)
    assert calls[-1] is RunState.SUCCEEDED  # the hostile observer itself saw the end too


def test_raising_done_callback_does_not_stop_the_others_or_the_run() -> None:
    gate, started = threading.Event(), threading.Event()
    run = held_run(gate, started)
    assert started.wait(WAIT_S)
    later = threading.Event()
    escaped = []
    original_hook = threading.excepthook
    threading.excepthook = lambda args: escaped.append(args)
    try:
        run._on_done(lambda: sys.exit(2))
        run._on_done(later.set)
        gate.set()
        assert later.wait(WAIT_S)
        assert run.result(WAIT_S) == 1
        join_stagewidget_threads()
    finally:
        threading.excepthook = original_hook
    assert escaped == []
    # one registered after the end is called at once, isolated just the same
    run._on_done(lambda: sys.exit(2))


def test_run_start_listener_raising_base_exception_does_not_stop_the_run(caplog) -> None:
    def hostile(run: sw.Run) -> None:
        raise SystemExit(4)

    remove = on_run_start(hostile)
    try:
        with caplog.at_level(logging.ERROR, logger="stagewidget"):
            run = sw.Pipeline("p", [lambda x: x + 1]).start(1, display=False)
    finally:
        remove()
    assert run.result(WAIT_S) == 2
    assert any("run-start listener" in r.getMessage() for r in caplog.records)
