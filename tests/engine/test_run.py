"""Runs end to end in real threads: results, observers, cancel, failure, retry, waits."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from conftest import WAIT_S, Recorder, join_stagewidget_threads, stagewidget_threads

import stagewidget as sw
from stagewidget import Cancelled, InvalidTransition, RunState, StageState


def states(status: sw.RunStatus) -> list[str]:
    return [s.state.value for s in status.stages]


def gated_pipeline(gate: threading.Event, started: threading.Event | None = None) -> sw.Pipeline:
    """load -> wait on ``gate`` -> double."""
    pipe = sw.Pipeline("gated")

    @pipe.stage
    def load(x):
        return x

    @pipe.stage
    def hold(x):
        if started is not None:
            started.set()
        assert gate.wait(WAIT_S)
        return x

    @pipe.stage
    def double(x):
        return 2 * x

    return pipe


def test_start_returns_at_once_and_result_chains_stage_outputs() -> None:
    gate, started = threading.Event(), threading.Event()
    run = gated_pipeline(gate, started).start(21, display=False)
    assert started.wait(WAIT_S)
    status = run.status()
    assert status.state is RunState.RUNNING
    assert states(status) == ["succeeded", "running", "pending"]
    assert status.current_stage.name == "hold"
    assert not run.done()
    gate.set()
    assert run.result(WAIT_S) == 42
    assert run.done()
    assert run.status().state is RunState.SUCCEEDED


def test_stages_run_in_a_named_daemon_thread() -> None:
    seen = {}

    def where(x):
        seen["thread"] = threading.current_thread()
        return x

    sw.Pipeline("p", [where]).run(1, display=False)
    assert seen["thread"] is not threading.main_thread()
    assert seen["thread"].name.startswith("stagewidget-run-")
    assert seen["thread"].daemon


def test_result_times_out_while_running() -> None:
    gate = threading.Event()
    run = gated_pipeline(gate).start(1, display=False)
    with pytest.raises(TimeoutError, match="still running"):
        run.result(timeout=0.05)
    status = run.wait(timeout=0.01)
    assert status.state is RunState.RUNNING
    gate.set()
    assert run.result(WAIT_S) == 2


def test_observers_see_transitions_in_order_on_the_ticker_thread(recorder: Recorder) -> None:
    gate = threading.Event()
    run = gated_pipeline(gate).start(1, display=recorder)
    gate.set()
    run.wait(WAIT_S)
    history = [(s.state.value, tuple(states(s))) for s in recorder.snapshots]
    wanted = [
        ("running", ("running", "pending", "pending")),
        ("running", ("succeeded", "pending", "pending")),
        ("running", ("succeeded", "running", "pending")),
        ("running", ("succeeded", "succeeded", "pending")),
        ("running", ("succeeded", "succeeded", "running")),
        ("running", ("succeeded", "succeeded", "succeeded")),
        ("succeeded", ("succeeded", "succeeded", "succeeded")),
    ]
    deduped = [h for i, h in enumerate(history) if i == 0 or h != history[i - 1]]
    assert [h for h in deduped if h in wanted] == wanted
    assert recorder.last.state is RunState.SUCCEEDED
    assert recorder.last.result == 2
    assert all(name.startswith("stagewidget-ticker") for name in recorder.threads)


def test_observer_is_called_without_the_run_lock_held() -> None:
    results = []
    run_box = []

    def observer(status):
        if run_box and status.done():
            # status() takes the run's lock: it would deadlock if we held it
            probe = threading.Thread(target=lambda: results.append(run_box[0].status()))
            probe.start()
            probe.join(WAIT_S)
            results.append(probe.is_alive())

    pipe = sw.Pipeline("p", [lambda x: x])
    run = pipe.start(1, display=False)
    run_box.append(run)
    run.subscribe(observer)
    run.wait(WAIT_S)
    assert results and results[-1] is False


def test_raising_observer_is_logged_and_the_run_continues(caplog, recorder: Recorder) -> None:
    def broken(status):
        raise ValueError("observer bug")

    caplog.set_level(logging.ERROR, logger="stagewidget")
    run = sw.Pipeline("p", [sw.Stage(lambda x: x + 1, name="inc"), sw.Stage(lambda x: x * 3, name="triple")]).start(1, display=broken)
    run.subscribe(recorder)
    assert run.result(WAIT_S) == 6
    recorder.wait_for(lambda s: s.done())
    assert any("observer" in r.getMessage() and "continues" in r.getMessage()
               for r in caplog.records)
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


def test_slow_observer_never_blocks_the_stages() -> None:
    release = threading.Event()

    def slow(status):
        release.wait(WAIT_S)

    run = sw.Pipeline("p", [sw.Stage(lambda x: x + 1, name=f"inc{i}") for i in range(3)]).start(
        0, display=slow)
    with run._cond:  # the run finishes while the observer is still stuck on its first call
        assert run._cond.wait_for(lambda: run._status.state.terminal, WAIT_S)
    assert run.status().result == 3
    release.set()


def test_subscribing_to_a_finished_run_delivers_its_final_status(recorder: Recorder) -> None:
    run = sw.Pipeline("p", [lambda x: x]).start(5, display=False)
    run.wait(WAIT_S)
    run.subscribe(recorder)
    assert len(recorder.snapshots) == 1
    assert recorder.last.state is RunState.SUCCEEDED and recorder.last.result == 5


def test_new_subscriber_first_gets_the_current_status(recorder: Recorder) -> None:
    gate, started = threading.Event(), threading.Event()
    run = gated_pipeline(gate, started).start(1, display=False)
    assert started.wait(WAIT_S)
    run.subscribe(recorder)
    first = recorder.wait_for(lambda s: True)
    assert states(first) == ["succeeded", "running", "pending"]
    gate.set()
    run.wait(WAIT_S)


def test_unsubscribe_stops_deliveries(recorder: Recorder) -> None:
    gate, started = threading.Event(), threading.Event()
    run = gated_pipeline(gate, started).start(1, display=False)
    unsubscribe = run.subscribe(recorder)
    assert started.wait(WAIT_S)
    recorder.wait_for(lambda s: s.current == 1)
    unsubscribe()
    unsubscribe()  # idempotent
    count = len(recorder.snapshots)
    gate.set()
    run.wait(WAIT_S)
    assert len(recorder.snapshots) == count
    assert not recorder.last.done()


def test_progress_is_sampled_live_and_coalesced(recorder: Recorder) -> None:
    stop = threading.Event()
    seen_progress = threading.Event()

    def spin(_):
        for _ in sw.track(iter(int, 1), desc="spin"):  # endless until cancelled
            if stop.is_set():
                return "unreachable"
        return None

    run = sw.Pipeline("p", [spin]).start(None, display=recorder, refresh_hz=20)
    status = recorder.wait_for(lambda s: s.stages[0].done > 1000)
    seen_progress.set()
    assert status.stages[0].desc == "spin"
    assert status.stages[0].rate and status.stages[0].rate > 0
    recorder.wait_for(lambda s: s.stages[0].done > 2 * status.stages[0].done)
    run.cancel()
    run.wait(WAIT_S)
    progress = [s for s in recorder.snapshots if s.state is RunState.RUNNING
                and s.stages[0].state is StageState.RUNNING and s.stages[0].done]
    span = progress[-1].updated_at - progress[0].updated_at
    # at most refresh_hz deliveries per second (+1 for the fence post)
    assert len(progress) <= 20 * span + 2
    assert run.status().state is RunState.CANCELLED


def test_stage_progress_shows_declared_total_and_advance() -> None:
    step, stepped = threading.Event(), threading.Event()

    @sw.Stage
    def prep(x):
        sw.advance()
        sw.advance()
        stepped.set()
        assert step.wait(WAIT_S)
        return x

    pipe = sw.Pipeline("p", [sw.Stage(prep.fn, name="prep", total=5)])
    run = pipe.start(0, display=False)
    assert stepped.wait(WAIT_S)
    stage = run.status().stages[0]
    assert (stage.done, stage.total, stage.fraction) == (2, 5, 0.4)
    step.set()
    run.wait(WAIT_S)


def test_clock_is_injectable(clock) -> None:
    ticked = threading.Event()

    def work(x):
        clock.tick(30.0)
        ticked.set()
        return x

    run = sw.Pipeline("p", [work]).start(1, display=False, clock=clock)
    run.wait(WAIT_S)
    status = run.status()
    assert status.created_at == 1_000.0
    assert status.elapsed_s == 30.0
    assert status.stages[0].elapsed_s == 30.0
    assert status.finished_at == 1_030.0


# -- failure -----------------------------------------------------------------------------

@pytest.mark.parametrize("failing", [0, 1, 2])
def test_failure_in_any_stage_marks_it_and_skips_the_rest(failing: int) -> None:
    calls = []

    def make(i):
        def stage(x):
            calls.append(i)
            if i == failing:
                raise KeyError(f"column {i}")
            return x + [i]
        stage.__name__ = f"s{i}"
        return stage

    run = sw.Pipeline("p", [make(i) for i in range(3)]).start([], display=False)
    with pytest.raises(KeyError, match=f"column {failing}") as caught:
        run.result(WAIT_S)
    status = run.status()
    assert status.state is RunState.FAILED
    assert states(status) == ["succeeded"] * failing + ["failed"] + ["skipped"] * (2 - failing)
    assert status.error.stage == f"s{failing}"
    assert status.error.type == "KeyError"
    assert "raise KeyError" in status.error.traceback
    assert run.exception() is caught.value
    assert calls == list(range(failing + 1))


def test_retry_resumes_at_the_failed_stage_with_the_input_it_had() -> None:
    calls = []
    broken = {"yes": True}
    pipe = sw.Pipeline("p")

    @pipe.stage
    def load(x):
        calls.append("load")
        return x + 1

    @pipe.stage
    def train(x):
        calls.append(("train", x))
        if broken["yes"]:
            raise RuntimeError("diverged")
        return x * 10

    run = pipe.start(1, display=False)
    assert isinstance(run.exception(WAIT_S), RuntimeError)
    broken["yes"] = False
    again = run.retry(display=False)
    assert again.result(WAIT_S) == 20
    assert calls == ["load", ("train", 2), ("train", 2)]
    status = again.status()
    assert status.retry_of == run.run_id
    assert states(status) == ["succeeded", "succeeded"]
    assert status.stages[0] == run.status().stages[0]  # kept, not run again


def test_retry_uses_a_stage_redefined_after_the_failure() -> None:
    pipe = sw.Pipeline("p")
    scope = {"pipe": pipe, "__name__": "cell"}
    exec("@pipe.stage\ndef fit(x):\n    raise ValueError(x)\n", scope)
    run = pipe.start(3, display=False)
    run.wait(WAIT_S)
    exec("@pipe.stage\ndef fit(x):\n    return x + 1\n", scope)
    assert run.retry(display=False).result(WAIT_S) == 4


def test_retry_of_a_succeeded_run_is_refused() -> None:
    run = sw.Pipeline("p", [lambda x: x]).start(1, display=False)
    run.wait(WAIT_S)
    with pytest.raises(InvalidTransition, match="is succeeded; only a failed or cancelled run can be retried"):
        run.retry()


def test_retry_after_a_pipeline_changed_shape_is_refused() -> None:
    def bad(x):
        raise ValueError

    pipe = sw.Pipeline("p", [bad])
    run = pipe.start(1, display=False)
    run.wait(WAIT_S)
    pipe.add(lambda x: x, name="extra")
    with pytest.raises(sw.PipelineError, match="start a new run"):
        run.retry()


# -- cancellation ------------------------------------------------------------------------

def test_cancel_inside_a_track_loop_ends_the_run_cancelled() -> None:
    inside = threading.Event()
    later = []

    def loop(_):
        for i in sw.track(range(10**9)):
            if i == 100:
                inside.set()
        return "finished"

    run = sw.Pipeline("p", [loop, lambda x: later.append(x)]).start(None, display=False)
    assert inside.wait(WAIT_S)
    assert run.cancel() is True
    status = run.wait(WAIT_S)
    assert status.state is RunState.CANCELLED
    assert states(status) == ["cancelled", "skipped"]
    assert later == []
    with pytest.raises(Cancelled, match="cancelled in stage 'loop'"):
        run.result()
    assert isinstance(run.exception(), Cancelled)


@pytest.mark.parametrize("call", ["advance", "report", "track"])
def test_cancel_takes_effect_at_the_next_progress_call(call: str) -> None:
    waiting, go = threading.Event(), threading.Event()
    swallowed = []

    def stage(_):
        waiting.set()
        assert go.wait(WAIT_S)
        try:
            if call == "advance":
                sw.advance()
            elif call == "report":
                sw.report(loss=1.0)
            else:
                sw.track([1, 2, 3])
        except Exception:  # a stage's own error handling must not swallow it
            swallowed.append(True)
        return "not reached"

    run = sw.Pipeline("p", [stage]).start(None, display=False)
    assert waiting.wait(WAIT_S)
    run.cancel()
    go.set()
    assert run.wait(WAIT_S).state is RunState.CANCELLED
    assert swallowed == []


def test_cancel_between_stages_prevents_later_stages() -> None:
    waiting, go = threading.Event(), threading.Event()
    ran = []

    def ignores_cancel(x):
        waiting.set()
        assert go.wait(WAIT_S)
        return x  # never calls a progress function

    run = sw.Pipeline("p", [ignores_cancel, lambda x: ran.append(x)]).start(1, display=False)
    assert waiting.wait(WAIT_S)
    assert sw.cancelled() is False
    run.cancel()
    go.set()
    status = run.wait(WAIT_S)
    assert status.state is RunState.CANCELLED
    assert states(status) == ["succeeded", "cancelled"]
    assert ran == []
    # the finished stage's output is kept: retry resumes after it
    assert run.retry(display=False).result(WAIT_S) is None
    assert ran == [1]


def test_cancel_before_the_first_stage_runs_nothing() -> None:
    ran = []
    gate = threading.Event()
    pipe = sw.Pipeline("p", [lambda x: ran.append(x)])
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=10,
                 clock=lambda: 0.0)
    assert run.status().state is RunState.PENDING
    run.cancel()
    run.launch()
    status = run.wait(WAIT_S)
    gate.set()
    assert status.state is RunState.CANCELLED
    assert states(status) == ["cancelled"]
    assert ran == []


def test_cancel_of_a_finished_run_returns_false() -> None:
    run = sw.Pipeline("p", [lambda x: x]).start(1, display=False)
    run.wait(WAIT_S)
    assert run.cancel() is False
    assert run.status().state is RunState.SUCCEEDED


def test_cancel_reaches_an_async_stage_through_its_task() -> None:
    started = threading.Event()

    async def waits_forever(_):
        started.set()
        await asyncio.Event().wait()

    run = sw.Pipeline("p", [waits_forever]).start(None, display=False)
    assert started.wait(WAIT_S)
    run.cancel()
    assert run.wait(WAIT_S).state is RunState.CANCELLED


def test_stage_threads_report_through_the_handle_they_are_given() -> None:
    def fan_out(items):
        handle = sw.current_stage()
        handle.set_total(len(items))

        def work(item):
            handle.activate()
            sw.advance()

        threads = [threading.Thread(target=work, args=(i,)) for i in items]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(items)

    run = sw.Pipeline("p", [fan_out]).start(list(range(8)), display=False)
    assert run.result(WAIT_S) == 8
    assert (run.status().stages[0].done, run.status().stages[0].total) == (8, 8)


# -- sync and async, inline, await ------------------------------------------------------

def test_sync_and_async_stages_mix() -> None:
    async def fetch(n):
        async def one(i):
            await asyncio.sleep(0)
            return i

        return await asyncio.gather(*(one(i) for i in range(n)))

    async def stream(items):
        async def gen():
            for i in items:
                await asyncio.sleep(0)
                yield i

        return [x async for x in sw.track(gen(), total=len(items), desc="stream")]

    pipe = sw.Pipeline("mix", [fetch, sorted, stream, sum])
    run = pipe.start(5, display=False)
    assert run.result(WAIT_S) == 10
    assert run.status().stages[2].done == 5


def test_inline_executor_runs_in_the_calling_thread() -> None:
    seen = []
    run = sw.Pipeline("p", [lambda x: seen.append(threading.current_thread()) or x]).start(
        3, executor="inline", display=False)
    assert run.done()
    assert seen == [threading.current_thread()]
    assert run.result() == 3


def test_inline_async_stage_inside_a_running_loop_uses_a_nested_loop() -> None:
    async def stage(x):
        await asyncio.sleep(0)
        return x + 1

    async def cell():  # like a notebook cell: a loop is already running
        return sw.Pipeline("p", [stage]).run(1, executor="inline", display=False)

    assert asyncio.run(cell()) == 2


def test_await_run_gives_the_result_without_blocking_the_loop() -> None:
    gate = threading.Event()

    async def main():
        run = gated_pipeline(gate).start(4, display=False)
        ticks = 0
        waiter = asyncio.ensure_future(run)
        while not waiter.done():
            ticks += 1
            if ticks == 3:
                gate.set()
            await asyncio.sleep(0.001)
        return await waiter, ticks

    result, ticks = asyncio.run(main())
    assert result == 8 and ticks >= 3


def test_await_run_reraises_the_stage_exception() -> None:
    def bad(x):
        raise LookupError("nope")

    async def main():
        return await sw.Pipeline("p", [bad]).start(1, display=False)

    with pytest.raises(LookupError, match="nope"):
        asyncio.run(main())


def test_ctrl_c_during_blocking_run_cancels_it(monkeypatch) -> None:
    import signal

    inside = threading.Event()
    waiting = threading.Event()
    runs: list[sw.Run] = []

    def loop(_):
        inside.set()
        for _ in sw.track(iter(int, 1)):
            pass

    original_wait = sw.Run._wait_ended

    def wait(self):  # pipe.run() is now blocked waiting for the run to end
        if threading.current_thread() is threading.main_thread():
            runs.append(self)
            waiting.set()
        return original_wait(self)

    monkeypatch.setattr(sw.Run, "_wait_ended", wait)

    def interrupt():
        assert inside.wait(WAIT_S) and waiting.wait(WAIT_S)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=interrupt).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            sw.Pipeline("p", [loop]).run(None, display=False)
        assert runs[0].status().state is RunState.CANCELLED
    finally:
        for run in runs:  # never leave an endless stage behind for the next tests
            run.cancel()


def test_two_hundred_concurrent_runs_finish_and_leave_no_threads() -> None:
    join_stagewidget_threads()
    baseline = {t.ident for t in threading.enumerate()}
    gate = threading.Event()

    def hold(x):
        assert gate.wait(WAIT_S)
        for _ in sw.track(range(1000)):
            pass
        return x

    pipe = sw.Pipeline("many", [hold, lambda x: x * 2])
    runs = [pipe.start(i, display=False) for i in range(200)]
    assert len(stagewidget_threads()) >= 200
    gate.set()
    assert [r.result(WAIT_S) for r in runs] == [2 * i for i in range(200)]
    assert len({r.run_id for r in runs}) == 200
    join_stagewidget_threads()
    assert {t.ident for t in threading.enumerate()} <= baseline


@pytest.mark.parametrize("exc, state", [(SystemExit(3), RunState.FAILED),
                                        (KeyboardInterrupt(), RunState.FAILED),
                                        (MemoryError(), RunState.FAILED)])
def test_nothing_escapes_the_driver_thread(monkeypatch, exc, state) -> None:
    escaped = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args))

    def stage(_):
        raise exc

    run = sw.Pipeline("p", [stage]).start(None, display=False)
    assert run.wait(WAIT_S).state is state
    join_stagewidget_threads()
    assert escaped == []
