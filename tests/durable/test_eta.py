"""ETAs from the run history: expected stage durations, the run's ETA, overdue stages."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import WAIT_S, FakeClock

import stagewidget as sw
from stagewidget import RunState, StageState, StageStatus
from stagewidget.views import format as fmt


def running_status(elapsed_s: float, expected: list[float | None]) -> sw.RunStatus:
    stages = (StageStatus("a", StageState.RUNNING, elapsed_s=elapsed_s, started_at=0.0,
                          expected_s=expected[0]),
              *(StageStatus(name, expected_s=e) for name, e in zip("bc", expected[1:])))
    return sw.RunStatus("r", "p", RunState.RUNNING, stages, current=0, started_at=0.0,
                        elapsed_s=elapsed_s)


def test_the_run_eta_is_the_stage_remainder_plus_later_medians() -> None:
    status = running_status(1.0, [2.0, 5.0, 3.0])
    assert status.stages[0].eta_s == 1.0
    assert status.eta_s == 9.0
    assert status.to_dict()["eta_s"] == 9.0
    assert status.to_dict()["stages"][1]["expected_s"] == 5.0


def test_a_stage_past_its_median_has_no_time_left_and_is_overdue_past_twice() -> None:
    assert running_status(3.0, [2.0, 5.0, 3.0]).eta_s == 8.0  # 0 left in the first
    assert not running_status(4.0, [2.0, None, None]).stages[0].overdue
    late = running_status(4.5, [2.0, None, None]).stages[0]
    assert late.overdue and late.to_dict()["overdue"] is True
    assert fmt.stage_tone(late) == "warning"
    assert fmt.stage_figures(late).endswith("slow") and "slow" in fmt.stage_line(late)
    assert fmt.stage_tone(running_status(1.0, [2.0]).stages[0]) == "active"


def test_without_history_for_every_later_stage_the_old_estimates_stay() -> None:
    assert running_status(1.0, [2.0, None, 3.0]).eta_s is None  # nothing done: unknown
    half = sw.RunStatus("r", "p", RunState.RUNNING,
                        (StageStatus("a", StageState.SUCCEEDED, expected_s=1.0),
                         StageStatus("b", StageState.RUNNING, elapsed_s=1.0, expected_s=4.0),
                         StageStatus("c")), current=1, elapsed_s=2.0)
    assert half.eta_s == 2.0 * (1 - 1 / 3) / (1 / 3)  # extrapolated: "c" has no history
    bare = StageStatus("a", StageState.RUNNING, done=1, total=4, elapsed_s=1.0)
    assert bare.eta_s == 3.0 and not bare.overdue  # the rate-based estimate


def test_a_pending_stage_shows_its_expected_duration() -> None:
    stage = StageStatus("b", expected_s=5.0)
    assert fmt.stage_figures(stage) == "pending · ~5.0s"
    assert fmt.stage_line(stage).split()[-1] == "~5.0s"
    assert fmt.stage_figures(StageStatus("b")) == "pending"


# The stages read the clock and the gate through globals, not closures: a closure's
# values are part of a stage's code fingerprint, and these must not change between runs.
CLOCK = FakeClock()
GATE = threading.Event()
REACHED = threading.Event()


def fetch():
    CLOCK.tick(1.0)
    if not GATE.is_set():  # the third run waits here, 1 s into its first stage
        REACHED.set()
        assert GATE.wait(20)
    CLOCK.tick(1.0)
    return 1


def fit(x):
    CLOCK.tick(5.0)
    return x


def score(x):
    CLOCK.tick(3.0)
    return x


def test_a_third_run_one_second_in_expects_nine_more_seconds(home: Path) -> None:
    pipe = sw.Pipeline("timed", [fetch, fit, score])
    GATE.set()
    for _ in range(2):
        run = pipe.start(display=False, clock=CLOCK)
        assert run.result(WAIT_S) == 1
        assert [s.elapsed_s for s in run.status().stages] == [2.0, 5.0, 3.0]
    GATE.clear()
    third = pipe.start(display=False, clock=CLOCK)
    try:
        assert REACHED.wait(WAIT_S)
        status = third.status()
        assert [s.expected_s for s in status.stages] == [2.0, 5.0, 3.0]
        assert status.stages[0].elapsed_s == 1.0
        assert status.eta_s == pytest.approx(9.0, rel=0.1)
        assert "eta 9.0s" in fmt.run_line(status)
    finally:
        GATE.set()
    assert third.result(WAIT_S) == 1


def test_an_edited_stage_has_no_expected_duration(home: Path) -> None:
    def cut(x):
        return x

    sw.Pipeline("edited", [sw.Stage(lambda: 1, name="make"), cut]).start(
        display=False).result(WAIT_S)

    def cut(x):  # the cell defining it, edited and run again
        return x + 0

    status = sw.Pipeline("edited", [sw.Stage(lambda: 1, name="make"), cut]).start(
        display=False).wait(WAIT_S)
    assert status.stages[0].expected_s is not None  # same code: timed before
    assert status.stages[1].expected_s is None


def test_the_widget_shows_expected_durations_and_slow_stages_in_the_warning_tone() -> None:
    from stagewidget.views.widget import stage_html

    late = running_status(4.5, [2.0]).stages[0]
    assert 'class="sw-r sw-warning' in stage_html(late) and "slow" in stage_html(late)
    on_time = running_status(1.0, [2.0]).stages[0]
    assert 'class="sw-r sw-active' in stage_html(on_time)
    assert "pending · ~5.0s" in stage_html(StageStatus("b", expected_s=5.0))


def test_a_held_stage_keeps_its_eta_from_history_but_not_a_rate_based_one() -> None:
    stage = StageStatus("train", state=StageState.RUNNING, done=3, total=10, elapsed_s=60.0,
                        expected_s=100.0)
    assert not fmt.eta_is_stale(stage, held_s=50.0)  # the median does not need progress
    assert "eta 40.0s" in fmt.stage_figures(stage, held_s=50.0)
    rate_based = replace(stage, expected_s=None)
    assert fmt.eta_is_stale(rate_based, held_s=50.0)
    assert "no progress for 50.0s" in fmt.stage_figures(rate_based, held_s=50.0)
