"""What a stage raises is recorded as it was: cancel-like exceptions nobody asked for are
failures, and an exception that cannot even be printed keeps its type, stage and traceback."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from conftest import WAIT_S

import stagewidget as sw
from stagewidget import RunState


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_stage_raising_keyboard_interrupt_itself_fails_the_run_with_it_recorded() -> None:
    def load(_):
        return 1

    def train(_):
        raise KeyboardInterrupt("from the stage itself")

    run = sw.Pipeline("p", [load, train]).start(None, display=False)
    status = run.wait(WAIT_S)
    assert status.state is RunState.FAILED
    assert [s.state.value for s in status.stages] == ["succeeded", "failed"]
    assert status.error.type == "KeyboardInterrupt"
    assert status.error.stage == "train"
    assert status.error.message == "from the stage itself"
    with pytest.raises(KeyboardInterrupt, match="from the stage itself"):
        run.result(WAIT_S)


@pytest.mark.parametrize("exc", [sw.Cancelled("another run was cancelled"),
                                 asyncio.CancelledError()],
                         ids=["sw.Cancelled", "asyncio.CancelledError"])
def test_stage_raising_a_cancel_nobody_asked_for_fails_the_run(exc: BaseException) -> None:
    def stage(_):
        raise exc

    status = sw.Pipeline("p", [stage]).start(None, display=False).wait(WAIT_S)
    assert status.state is RunState.FAILED
    assert status.error.stage == "stage"


def test_keyboard_interrupt_after_cancel_still_ends_cancelled() -> None:
    inside, cancelled = threading.Event(), threading.Event()

    def stage(_):
        inside.set()
        assert cancelled.wait(WAIT_S)
        raise KeyboardInterrupt  # e.g. a library turning the cancel into its own interrupt

    run = sw.Pipeline("p", [stage]).start(None, display=False)
    assert inside.wait(WAIT_S)
    run.cancel()
    cancelled.set()
    assert run.wait(WAIT_S).state is RunState.CANCELLED


def test_keyboard_interrupt_in_the_main_thread_inline_stays_a_cancel() -> None:
    def stage(_):  # the inline executor runs it here, in the main thread: a real Ctrl-C
        raise KeyboardInterrupt

    assert threading.current_thread() is threading.main_thread()
    with pytest.raises(KeyboardInterrupt):
        sw.Pipeline("p", [stage]).run(None, display=False, executor="inline")
    assert sw.engine.run.recent_runs()[-1].status().state is RunState.CANCELLED


def test_exception_whose_str_raises_keeps_its_type_stage_and_traceback() -> None:
    def load(_):
        return 1

    def train(_):
        raise Unprintable()

    run = sw.Pipeline("p", [load, train]).start(None, display=False)
    status = run.wait(WAIT_S)
    assert status.state is RunState.FAILED
    assert [s.state.value for s in status.stages] == ["succeeded", "failed"]
    assert status.error.type.endswith("Unprintable")
    assert status.error.stage == "train"
    assert status.error.message == "<exception str() failed: RuntimeError: no str for you>"
    assert "raise Unprintable()" in status.error.traceback
    json.dumps(status.to_dict())
    with pytest.raises(Unprintable):
        run.result(WAIT_S)


@pytest.mark.parametrize("total", [None, 10**30], ids=["len", "given-total"])
def test_track_over_a_range_past_sys_maxsize_works_inside_a_run(total) -> None:
    seen = threading.Event()

    def count(_):
        for i in sw.track(range(10**30), total=total):
            if i == 10_000:
                return i
        return None

    run = sw.Pipeline("p", [count]).start(None, display=False)
    run.subscribe(lambda s: s.done() and seen.set())
    assert run.result(WAIT_S) == 10_000
    stage = run.status().stages[0]
    assert (stage.done, stage.total) == (10_001, 10**30)
    assert seen.wait(WAIT_S)
    json.dumps(run.status().to_dict())


def test_report_of_an_int_past_the_digit_limit_is_accepted_and_the_run_recorded() -> None:
    def stage(_):
        sw.report(big=10**5000)
        return "ok"

    run = sw.Pipeline("p", [stage]).start(None, display=False)
    assert run.result(WAIT_S) == "ok"
    data = json.loads(json.dumps(run.status().to_dict()))
    assert data["stages"][0]["metrics"] == {"big": "1.000000e+5000"}


def test_keyboard_interrupt_in_an_inline_stage_off_the_main_thread_stays_a_cancel() -> None:
    # e.g. a kernel subshell thread running pipe.run(executor="inline") gets interrupted
    outcome: list[BaseException] = []

    def stage(_):
        raise KeyboardInterrupt

    def blocking() -> None:
        try:
            sw.Pipeline("p", [stage]).run(None, display=False, executor="inline")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=blocking)
    thread.start()
    thread.join(WAIT_S)
    assert isinstance(outcome[0], KeyboardInterrupt)
    assert sw.engine.run.recent_runs()[-1].status().state is RunState.CANCELLED
