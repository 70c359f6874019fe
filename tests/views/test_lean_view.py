"""The lean widget view: few models, a small saved state, one message per delivery, a
run held weakly, and states it does not know drawn from their values."""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
import time
from collections import deque
from enum import StrEnum

import ipywidgets as w
from conftest import WAIT_S
from ipywidgets.embed import dependency_state

import stagewidget as sw
from bench.view_state import five_stage_pipeline  # the pipeline the benchmark measures
from stagewidget import RunState, StageStatus
from stagewidget.engine import run as run_module
from stagewidget.engine.logs import capture_logs
from stagewidget.views import format as fmt
from stagewidget.views.widget import (
    BAR_PERIOD_S,
    EXTRA_PERIOD_S,
    TEXT_PERIOD_S,
    RunView,
    stage_html,
)


def model_ids() -> set[str]:
    return set(w.Widget.widgets)  # every live widget model of the process, by id


def test_a_five_stage_view_is_at_most_12_models_and_saves_at_most_10_kb() -> None:
    root = logging.getLogger()
    handler = capture_logs()
    try:
        pipe = five_stage_pipeline()
        before = model_ids()
        run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=50,
                     clock=time.time)
        view = RunView(run)
        run.launch()
        status = run.wait(WAIT_S)
        view.refresh()
    finally:
        root.removeHandler(handler)
    assert status.state is RunState.FAILED and len(status.logs) >= 200
    assert all(len(s.history) == 2 for s in status.stages)
    assert len(model_ids() - before) <= 12
    state = dependency_state(view.widget)
    assert len(state) <= 12
    saved = json.dumps(state, separators=(",", ":"))
    assert len(saved) <= 10_000, len(saved)
    # what a saved notebook shows: the latest log lines, the charts, the error
    assert "stage 4, batch 49: a log line" in saved and "stage 0, batch 0:" not in saved
    assert saved.count("<svg") == 10 and "ValueError: bad batch" in saved


def test_each_delivery_sends_at_most_one_message_and_only_the_live_part_while_running(
        recorder) -> None:
    now = [0.0]
    gate = threading.Event()
    steps = []

    def spin(_):
        for i in sw.track(range(10**9), desc="items"):
            steps.append(i)
            if gate.is_set():
                return i

    pipe = sw.Pipeline("spin", [sw.Stage(lambda x: x, name="load"), spin,
                                sw.Stage(lambda x: x, name="save")])
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=50,
                 clock=time.time)
    view = RunView(run, clock=lambda: now[0])
    sent: dict[str, list[dict]] = {}
    for name in ("_live", "_table", "_extra"):
        widget, log = getattr(view, name), sent.setdefault(name, [])
        widget.comm.send = lambda data=None, buffers=None, log=log, **_: log.append(data)
    run.subscribe(recorder)
    run.launch()
    recorder.wait_for(lambda s: s.current == 1 and s.stages[1].done > 0)
    mark = {name: len(log) for name, log in sent.items()}
    seen = len(recorder.snapshots)
    for _ in range(5):  # the figures change on every delivery; each period lets one through
        now[0] += TEXT_PERIOD_S
        count = len(recorder.snapshots)
        recorder.wait_for(lambda s, count=count: len(recorder.snapshots) >= count + 2)
    gate.set()
    run.wait(WAIT_S)
    steady = len(recorder.snapshots) - seen
    # while the middle stage runs, only the live part (header and running row) changes
    assert 5 <= len(sent["_live"]) - mark["_live"] <= steady
    assert all(len(sent[name]) - mark[name] <= 2 for name in ("_table", "_extra"))
    assert len(sent["_live"]) <= len(recorder.snapshots)
    assert all(len(json.dumps(m)) < 1500 for m in sent["_live"])


def _running(run_id: str, step: int, *, total: int | None = None,
             elapsed_s: float = 0.0) -> sw.RunStatus:
    stage = StageStatus(name="only", state=sw.StageState.RUNNING, done=step, total=total,
                        elapsed_s=elapsed_s)
    return sw.RunStatus(run_id=run_id, pipeline="p", state=RunState.RUNNING, stages=(stage,),
                        current=0, started_at=0.0, elapsed_s=elapsed_s)


def _paced_view() -> tuple[list[float], sw.Run, RunView]:
    """A view of a run never launched, on a clock the test moves (``now[0]``)."""
    now = [0.0]
    pipe = sw.Pipeline("p", [sw.Stage(lambda x: x, name="only")])
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=10,
                 clock=time.time)
    return now, run, RunView(run, clock=lambda: now[0])


def test_figures_alone_are_redrawn_every_text_period_and_moving_bars_every_bar_period() -> None:
    now, run, view = _paced_view()
    sent: list[str] = []
    view._live.comm.send = lambda data=None, buffers=None, **_: sent.append(data["state"]["value"])

    def deliver(step: int, at: float, total: int | None = None) -> None:
        now[0] = at
        view._on_status(_running(run.run_id, step, total=total, elapsed_s=at))

    deliver(1, 0.0)  # a transition: drawn at once
    assert len(sent) == 1
    for step, at in enumerate((0.1, 0.2, 0.3, 0.4), start=2):  # counts and elapsed only
        deliver(step, at)
    assert len(sent) == 1
    deliver(6, TEXT_PERIOD_S)  # the figures' period passed: the latest figures go
    assert len(sent) == 2 and "<span>6 · " in sent[-1] and "0.5s" in sent[-1]
    # a bar that moves is redrawn every BAR_PERIOD_S, sooner than figures alone
    deliver(10, TEXT_PERIOD_S + BAR_PERIOD_S / 2, total=100)
    assert len(sent) == 2
    deliver(20, TEXT_PERIOD_S + BAR_PERIOD_S * 1.25, total=100)
    assert len(sent) == 3 and "width:20%" in sent[-1]
    deliver(20, TEXT_PERIOD_S + BAR_PERIOD_S * 2.5, total=100)  # the bar stood still
    assert len(sent) == 3
    final = sw.RunStatus(run_id=run.run_id, pipeline="p", state=RunState.SUCCEEDED,
                         stages=(StageStatus(name="only", state=sw.StageState.SUCCEEDED,
                                             done=100, total=100),), elapsed_s=1.0)
    now[0] += 0.01
    view._on_status(final)  # the final status at once
    assert len(sent) == 4 and "succeeded" in sent[-1] and "100%" in sent[-1]


def test_the_view_does_not_keep_its_run_alive_and_cancel_on_a_gone_run_does_nothing(
        monkeypatch) -> None:
    monkeypatch.setattr(run_module, "_recent", deque())
    pipe = sw.Pipeline("p", [sw.Stage(lambda x: x, name="only")])
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=50,
                 clock=time.time)
    view = RunView(run)
    alive = __import__("weakref").ref(run)
    del run
    gc.collect()
    assert alive() is None
    view._cancel.click()  # nothing to cancel: no error
    assert "pending" in view._live.value


def test_retry_on_a_run_gone_is_disabled_with_a_reason() -> None:
    def cancelled(status: RunState) -> sw.RunStatus:
        return sw.RunStatus(run_id="0" * 32, pipeline="p", state=status,
                            stages=(StageStatus(name="only", state=sw.StageState.CANCELLED),))

    pipe = sw.Pipeline("p", [sw.Stage(lambda x: x, name="only")])
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=50,
                 clock=time.time)
    view = RunView(run)
    del run
    gc.collect()
    view._on_status(cancelled(RunState.CANCELLED))
    assert "sw-hide" not in view._retry._dom_classes
    assert view._retry.disabled and "gone" in view._retry.tooltip
    view._retry.click()
    assert view.retries == []


class Later(StrEnum):
    """States a later version may add, unknown to this view."""

    PAUSED = "paused"
    ARCHIVED = "archived"

    @property
    def terminal(self) -> bool:
        return True

    @property
    def succeeded(self) -> bool:
        return False


def test_a_state_the_view_does_not_know_is_drawn_from_its_value() -> None:
    row = stage_html(StageStatus(name="fetch", state=Later.PAUSED))  # type: ignore[arg-type]
    assert "</em>fetch</b>" in row and "<span>paused</span>" in row and "sw-muted" in row
    assert fmt.state_symbol(Later.ARCHIVED) == "•"  # type: ignore[arg-type]
    assert fmt.state_tone(Later.ARCHIVED) == "muted"  # type: ignore[arg-type]


def test_a_cached_stage_is_drawn_as_done_and_a_lost_run_as_a_danger() -> None:
    row = stage_html(StageStatus(name="fetch", state=sw.StageState.CACHED))
    assert "<span>cached</span>" in row and "sw-success" in row
    assert (fmt.state_symbol(sw.StageState.CACHED), fmt.state_tone(sw.StageState.CACHED)) == \
        ("✓", "success")
    assert (fmt.state_symbol(RunState.LOST), fmt.state_tone(RunState.LOST)) == ("?", "danger")


def test_header_figures_keep_tenths_of_a_second() -> None:
    status = sw.RunStatus(run_id="0" * 32, pipeline="p", state=RunState.SUCCEEDED,
                          stages=(StageStatus(name="s", state=sw.StageState.SUCCEEDED),),
                          started_at=100.0, finished_at=100.4, elapsed_s=0.4)
    assert fmt.run_figures(status) == "100% · 0.4s"


def test_charts_and_log_are_redrawn_at_most_once_a_period_but_always_at_the_end(
        recorder) -> None:
    now = [0.0]
    gate = threading.Event()

    def chatty(_):
        for i in sw.track(range(10**9), desc="steps"):
            sw.report(loss=1.0 / (i + 1))  # a new chart point on every step
            if gate.is_set():
                return i

    pipe = sw.Pipeline("chatty", [chatty])
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=50,
                 clock=time.time)
    view = RunView(run, clock=lambda: now[0])
    sent: list[dict] = []
    view._extra.comm.send = lambda data=None, buffers=None, **_: sent.append(data)
    run.subscribe(recorder)
    run.launch()
    recorder.wait_for(lambda s: len(s.stages[0].history.get("loss", ())) >= 2)
    mark, seen = len(sent), len(recorder.snapshots)
    recorder.wait_for(lambda s: len(recorder.snapshots) >= seen + 10)
    assert len(sent) - mark <= 1  # the clock stood still: at most the first chart
    now[0] += 1.0
    recorder.wait_for(lambda s: len(recorder.snapshots) >= seen + 12)
    assert len(sent) - mark >= 1  # the period passed: the next delivery redrew it
    gate.set()
    final = run.wait(WAIT_S)
    last = final.stages[0].history["loss"][-1]
    assert f"chatty: loss {last:.4g}</text>" in view._extra.value  # the final chart


def test_charts_and_the_live_row_are_redrawn_each_at_its_own_cadence() -> None:
    now, run, view = _paced_view()
    sent: list[str] = []
    for name in ("_live", "_table", "_extra"):
        getattr(view, name).comm.send = lambda data=None, buffers=None, name=name, **_: \
            sent.append(name)

    def running(step: int) -> sw.RunStatus:
        stage = StageStatus(name="only", state=sw.StageState.RUNNING, done=step,
                            metrics={"loss": 1 / (step + 1)},
                            history={"loss": tuple(1 / (i + 1) for i in range(step + 1))})
        return sw.RunStatus(run_id=run.run_id, pipeline="p", state=RunState.RUNNING,
                            stages=(stage,), current=0, elapsed_s=step / 10)

    view._on_status(running(1))  # a transition: everything may go
    sent.clear()
    for step in range(2, 11):  # nine deliveries in a chart period: the live row once
        now[0] = (step - 1) * EXTRA_PERIOD_S / 10
        view._on_status(running(step))
    assert sent == ["_live"]
    sent.clear()
    now[0] = EXTRA_PERIOD_S
    view._on_status(running(11))  # both periods passed: the chart and the live row
    assert sorted(sent) == ["_extra", "_live"]
    sent.clear()
    now[0] = EXTRA_PERIOD_S + TEXT_PERIOD_S / 2
    view._on_status(running(12))  # neither period passed: nothing
    assert sent == []
    now[0] = EXTRA_PERIOD_S + TEXT_PERIOD_S
    view._on_status(running(13))  # the live row's passed: the live row
    assert sent == ["_live"] and "13" in view._live.value


def test_a_stage_change_is_one_redraw_not_two() -> None:
    pipe = sw.Pipeline("p", [sw.Stage(lambda x: x, name="a"), sw.Stage(lambda x: x, name="b")])
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=10,
                 clock=time.time)
    view = RunView(run)
    sent: list[str] = []
    for name in ("_live", "_table", "_extra"):
        getattr(view, name).comm.send = lambda data=None, buffers=None, name=name, **_: \
            sent.append(name)
    S = sw.StageState

    def status(a: sw.StageState, b: sw.StageState, current: int) -> sw.RunStatus:
        return sw.RunStatus(run_id=run.run_id, pipeline="p", state=RunState.RUNNING,
                            stages=(StageStatus(name="a", state=a),
                                    StageStatus(name="b", state=b)), current=current)

    view._on_status(status(S.RUNNING, S.PENDING, 0))
    sent.clear()
    view._on_status(status(S.SUCCEEDED, S.PENDING, 0))  # between stages: nothing sent
    assert sent == []
    assert view._status.stages[0].state is S.SUCCEEDED  # yet the latest status is kept
    view._on_status(status(S.SUCCEEDED, S.RUNNING, 1))
    assert "_live" in sent and "running" in view._live.value


def test_a_stage_held_without_progress_shows_how_long_instead_of_a_stale_eta(clock) -> None:
    reached, release = threading.Event(), threading.Event()

    def held(_):
        sw.advance(10)
        reached.set()
        release.wait(WAIT_S)  # held: waiting on an event, no progress

    pipe = sw.Pipeline("p", [sw.Stage(held, name="wait", total=100)])
    run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(), refresh_hz=50, clock=clock)
    view = RunView(run)
    run.launch()
    try:
        assert reached.wait(WAIT_S)
        clock.tick(1.0)
        view.refresh()  # 10 steps in 1 s: an ETA from that rate
        assert "10/100 · 10.0 it/s · eta 9.0s" in view._live.value
        # (held since the first snapshot showing 10 steps: a delivery at 0 s, or that 1 s)
        clock.tick(3.0)
        view.refresh()  # held for 3 or 4 s: not long enough to call it stale
        assert "eta 36.0s" in view._live.value
        clock.tick(6.0)
        view.refresh()  # held for 9 or 10 s, ninety of its steps: no ETA claims a figure
        live = view._live.value
        assert re.search(r"no progress for (9|10)\.0s", live) and "eta" not in live
        assert "<span>10% · 10.0s</span>" in live  # the header: elapsed time, no ETA
    finally:
        release.set()
        run.wait(WAIT_S)
    assert "no progress" not in view._live.value and "succeeded" in view._live.value


def test_progress_held_counts_from_the_first_snapshot_showing_the_counts() -> None:
    def running(done: int, elapsed_s: float, *, current: int = 0) -> sw.RunStatus:
        stages = tuple(StageStatus(name=name, state=sw.StageState.RUNNING if i == current
                                   else sw.StageState.PENDING, done=done if i == current
                                   else 0, total=100, elapsed_s=elapsed_s)
                       for i, name in enumerate(("a", "b")))
        return sw.RunStatus(run_id="0" * 32, pipeline="p", state=RunState.RUNNING,
                            stages=stages, current=current, elapsed_s=elapsed_s)

    mark, held_s = fmt.progress_held(running(5, 1.0), None)
    assert held_s == 0.0
    mark, held_s = fmt.progress_held(running(5, 7.5), mark)
    assert held_s == 6.5 and fmt.eta_is_stale(running(5, 7.5).stages[0], held_s)
    mark, held_s = fmt.progress_held(running(6, 8.0), mark)  # progress: counts again
    assert held_s == 0.0
    _, held_s = fmt.progress_held(running(6, 9.0, current=1), mark)  # another stage
    assert held_s == 0.0
    # a slow stage (one step a minute) is not stalled between its steps
    slow = StageStatus(name="epochs", state=sw.StageState.RUNNING, done=2, total=10,
                       elapsed_s=160.0)
    assert not fmt.eta_is_stale(slow, 40.0) and fmt.eta_is_stale(slow, 160.0 - 30.0)
