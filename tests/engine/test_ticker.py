"""The ticker: one thread delivers every run's snapshots, in order per run, and a slow
observer on one run does not hold up the others."""

from __future__ import annotations

import threading

from conftest import WAIT_S, Recorder, join_stagewidget_threads, stagewidget_threads

import stagewidget as sw
from stagewidget import RunState


def ticker_threads() -> list[threading.Thread]:
    return [t for t in stagewidget_threads() if t.name.startswith("stagewidget-ticker")]


def held_pipeline(gate: threading.Event, started: threading.Event | None = None
                  ) -> sw.Pipeline:
    """load -> hold (counts until ``gate`` opens) -> double.

    History off: these tests count delivery threads and observers, and a recorded run
    has one more of each (its recorder and the history writer, tested in tests/durable).
    """
    pipe = sw.Pipeline("held", history=False)

    @pipe.stage
    def load(x):
        return x

    @pipe.stage
    def hold(x):
        if started is not None:
            started.set()
        for _ in sw.track(iter(int, 1)):  # endless until the gate opens
            if gate.wait(0.001):
                break
        return x

    @pipe.stage
    def double(x):
        return 2 * x

    return pipe


def transitions(recorder: Recorder) -> list[tuple[str, ...]]:
    """The run state and stage states of each snapshot, repeats dropped."""
    seen: list[tuple[str, ...]] = []
    for s in recorder.snapshots:
        key = (s.state.value,) + tuple(stage.state.value for stage in s.stages)
        if not seen or seen[-1] != key:
            seen.append(key)
    return seen


EXPECTED = [
    ("running", "running", "pending", "pending"),
    ("running", "succeeded", "pending", "pending"),
    ("running", "succeeded", "running", "pending"),
    ("running", "succeeded", "succeeded", "pending"),
    ("running", "succeeded", "succeeded", "running"),
    ("running", "succeeded", "succeeded", "succeeded"),
    ("succeeded", "succeeded", "succeeded", "succeeded"),
]


def test_many_runs_are_delivered_in_order_by_one_thread() -> None:
    join_stagewidget_threads()
    gate = threading.Event()
    recorders = [Recorder() for _ in range(40)]
    runs = [held_pipeline(gate).start(i, display=rec) for i, rec in enumerate(recorders)]
    try:
        for rec in recorders:  # every run is in its counting stage and has been seen there
            rec.wait_for(lambda s: s.stages[1].done > 0)
        # one driver per run, and one ticker (plus its watchdog) for all of them
        assert len(stagewidget_threads()) <= len(runs) + 2
    finally:
        gate.set()
    assert [r.result(WAIT_S) for r in runs] == [2 * i for i in range(40)]
    for rec in recorders:
        rec.wait_for(lambda s: s.done())
        assert [t for t in transitions(rec) if t in EXPECTED] == EXPECTED
        assert sum(s.done() for s in rec.snapshots) == 1  # the final once
        assert {name.split("-")[1] for name in rec.threads} == {"ticker"}
    join_stagewidget_threads()
    assert not ticker_threads()  # it ends once nothing is left to deliver


def test_run_without_observers_starts_no_delivery_thread() -> None:
    join_stagewidget_threads()
    gate, started = threading.Event(), threading.Event()
    run = held_pipeline(gate, started).start(1, display=False)
    try:
        assert started.wait(WAIT_S)
        assert [t.name.split("-")[1] for t in stagewidget_threads()] == ["run"]
    finally:
        gate.set()
    assert run.wait(WAIT_S).state is RunState.SUCCEEDED
    assert run._notifier.flush(0)  # the final status counts as handed out


def test_slow_observer_on_one_run_does_not_hold_up_another_run() -> None:
    join_stagewidget_threads()
    release, stuck = threading.Event(), threading.Event()
    gate_a, gate_b, started_b = threading.Event(), threading.Event(), threading.Event()

    def slow(status: sw.RunStatus) -> None:
        if status.stages[1].done > 0 and not stuck.is_set():
            stuck.set()
            release.wait(WAIT_S)  # a 6 s observer, made to last until the test is done

    after_slow = Recorder()
    run_a = held_pipeline(gate_a).start(1, display=False)
    run_a.subscribe(slow)
    run_a.subscribe(after_slow)  # called after the slow one, on the same run
    try:
        assert stuck.wait(WAIT_S)
        recorder_b = Recorder()
        run_b = held_pipeline(gate_b, started_b).start(2, display=recorder_b)
        # run B's progress, transitions and final come while A's observer is still stuck
        recorder_b.wait_for(lambda s: s.stages[1].done > 0)
        gate_b.set()
        assert run_b.result(WAIT_S) == 4
        recorder_b.wait_for(lambda s: s.done())
        assert run_b.wait(WAIT_S).state is RunState.SUCCEEDED
        assert not release.is_set()
        assert [t for t in transitions(recorder_b) if t in EXPECTED] == EXPECTED
        # A's stuck thread, the ticker that took over, and the watchdog
        assert len(ticker_threads()) <= 3
        # run A ends meanwhile, but its later snapshots wait for its stuck observer
        gate_a.set()
        assert run_a._wait_ended(deadline=None)
        assert not any(s.done() for s in after_slow.snapshots)
        assert not run_a._notifier.flush(0)
    finally:
        release.set()
        gate_a.set()
        gate_b.set()
    after_slow.wait_for(lambda s: s.done())
    # subscribed during stage "hold", it saw every transition from there on, in order
    assert [t for t in transitions(after_slow) if t in EXPECTED] == EXPECTED[2:]
    assert run_a._notifier.flush(WAIT_S)
    join_stagewidget_threads()
    assert not ticker_threads()  # the stuck thread ended when its observer returned


def test_observer_waiting_for_another_run_does_not_block_that_runs_delivery() -> None:
    gate_b = threading.Event()
    got: list[object] = []
    answered = threading.Event()
    run_b = held_pipeline(gate_b).start(5, display=False)

    def wait_for_b(status: sw.RunStatus) -> None:
        if status.done() and not answered.is_set():
            got.append(run_b.result(WAIT_S))  # B's final needs a ticker thread too
            answered.set()

    recorder_b = Recorder()
    run_b.subscribe(recorder_b)
    sw.Pipeline("quick", [lambda x: x]).start(1, display=wait_for_b)
    recorder_b.wait_for(lambda s: s.stages[1].done > 0)
    gate_b.set()
    assert answered.wait(WAIT_S)
    assert got == [10]
    recorder_b.wait_for(lambda s: s.done())


def test_observer_waiting_for_its_own_run_does_not_deadlock() -> None:
    outcome: list[object] = []
    finished = threading.Event()
    box: list[sw.Run] = []
    ready = threading.Event()

    def waits_on_own_run(status: sw.RunStatus) -> None:
        if status.done():
            assert ready.wait(WAIT_S)
            run = box[0]
            outcome.append(run._notifier.flush(None))  # would wait for itself forever
            outcome.append(run.result())
            outcome.append(run.wait().state)
            finished.set()

    gate = threading.Event()
    run = held_pipeline(gate).start(3, display=waits_on_own_run)
    box.append(run)
    ready.set()
    gate.set()
    assert finished.wait(WAIT_S)
    assert outcome == [False, 6, RunState.SUCCEEDED]
    assert run._notifier.flush(WAIT_S)


def test_observer_unsubscribing_itself_gets_nothing_more(recorder: Recorder) -> None:
    calls: list[sw.RunStatus] = []
    gate, started = threading.Event(), threading.Event()
    run = held_pipeline(gate, started).start(1, display=False)
    assert started.wait(WAIT_S)
    unsubscribe: list = []

    def once(status: sw.RunStatus) -> None:
        calls.append(status)
        unsubscribe[0]()

    unsubscribe.append(run.subscribe(once))
    run.subscribe(recorder)
    recorder.wait_for(lambda s: s.stages[1].done > 0)
    gate.set()
    assert run.result(WAIT_S) == 2
    recorder.wait_for(lambda s: s.done())
    assert run._notifier.flush(WAIT_S)
    assert len(calls) == 1


def test_subscribe_after_the_end_calls_once_at_once_in_the_caller() -> None:
    run = sw.Pipeline("p", [lambda x: x + 1]).start(1, display=False)
    assert run.result(WAIT_S) == 2
    seen: list[tuple[str, str]] = []
    run.subscribe(lambda s: seen.append((s.state.value, threading.current_thread().name)))
    assert seen == [("succeeded", threading.current_thread().name)]


def test_subscribers_before_launch_get_the_first_snapshot_then_every_transition() -> None:
    recorder = Recorder()
    pipe = sw.Pipeline("p", [sw.Stage(lambda x: x, name="load"),
                             sw.Stage(lambda x: x * 3, name="triple")])
    run = sw.Run.start(pipe, 2, launch=False)
    run.subscribe(recorder)
    assert not ticker_threads() or recorder.snapshots == []  # nothing before launch
    run.launch()
    assert run.result(WAIT_S) == 6
    recorder.wait_for(lambda s: s.done())
    assert recorder.snapshots[0].state is RunState.PENDING
    assert sum(s.done() for s in recorder.snapshots) == 1


def test_progress_is_sampled_while_a_stage_runs(recorder: Recorder) -> None:
    gate = threading.Event()
    run = held_pipeline(gate).start(1, display=recorder)
    first = recorder.wait_for(lambda s: s.stages[1].done > 0).stages[1].done
    recorder.wait_for(lambda s: s.stages[1].done > first)  # a later sample, not a transition
    gate.set()
    assert run.result(WAIT_S) == 2


def test_a_refresh_period_longer_than_the_idle_linger_keeps_sampling(recorder: Recorder
                                                                     ) -> None:
    gate = threading.Event()
    run = held_pipeline(gate).start(1, display=recorder, refresh_hz=0.5)  # every 2 s
    try:
        first = recorder.wait_for(lambda s: s.stages[1].state.value == "running")
        recorder.wait_for(lambda s: s.stages[1].done > first.stages[1].done)
    finally:
        gate.set()
    assert run.result(WAIT_S) == 2
