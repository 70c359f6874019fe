"""The text view: transition lines, heartbeat in log mode, a rewritten line when live."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

from stagewidget import ConfigError, ErrorInfo, RunState, RunStatus, StageState, StageStatus
from stagewidget.views import TextView
from stagewidget.views.format import run_line, summary

CLEAR = "\r\x1b[2K"


class FakeTTY(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class NoIsatty:
    """A bare writable object without isatty()."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def with_stage(run: RunStatus, index: int, **changes: object) -> RunStatus:
    stages = list(run.stages)
    stages[index] = replace(stages[index], **changes)
    return replace(run, stages=tuple(stages))


def pending(run_id: str = "r1") -> RunStatus:
    return RunStatus(run_id, "demo", stages=(StageStatus("load", total=10),
                                             StageStatus("train", total=4)))


def started(run_id: str = "r1") -> RunStatus:
    return replace(pending(run_id), state=RunState.RUNNING, started_at=0.0)


def load_running(run_id: str = "r1", done: int = 0, elapsed_s: float = 0.0) -> RunStatus:
    run = replace(started(run_id), current=0, elapsed_s=elapsed_s)
    return with_stage(run, 0, state=StageState.RUNNING, started_at=0.0, done=done,
                      elapsed_s=elapsed_s)


def load_succeeded(run_id: str = "r1") -> RunStatus:
    run = replace(load_running(run_id), elapsed_s=2.0)
    return with_stage(run, 0, state=StageState.SUCCEEDED, done=10, finished_at=2.0,
                      elapsed_s=2.0)


def train_failed(run_id: str = "r1") -> RunStatus:
    run = replace(load_succeeded(run_id), current=1, elapsed_s=3.0)
    return with_stage(run, 1, state=StageState.FAILED, started_at=2.0, finished_at=3.0,
                      done=1, elapsed_s=1.0)


def run_failed(run_id: str = "r1") -> RunStatus:
    error = ErrorInfo("ValueError", "bad batch", "Traceback ...", stage="train")
    return replace(train_failed(run_id), state=RunState.FAILED, finished_at=3.0, error=error)


def run_succeeded(run_id: str = "r1") -> RunStatus:
    run = replace(load_succeeded(run_id), current=1, state=RunState.SUCCEEDED,
                  finished_at=5.0, elapsed_s=5.0)
    return with_stage(run, 1, state=StageState.SUCCEEDED, started_at=2.0, finished_at=5.0,
                      done=4, elapsed_s=3.0)


def show(view: TextView, *snapshots: RunStatus) -> None:
    for snapshot in snapshots:
        view(snapshot)


# -- choosing the mode ----------------------------------------------------------------

def test_non_terminal_stream_gets_log_mode() -> None:
    assert not TextView(io.StringIO()).live


def test_terminal_stream_gets_live_mode() -> None:
    assert TextView(FakeTTY()).live


def test_stream_without_isatty_gets_log_mode() -> None:
    stream = NoIsatty()
    view = TextView(stream)  # type: ignore[arg-type]
    show(view, started())
    assert not view.live
    assert "\r" not in "".join(stream.parts)


def test_closed_stream_gets_log_mode() -> None:
    stream = io.StringIO()
    stream.close()
    assert not TextView(stream).live


def test_live_argument_overrides_detection() -> None:
    assert TextView(io.StringIO(), live=True).live
    assert not TextView(FakeTTY(), live=False).live


def test_default_stream_is_stderr_at_construction(capsys: pytest.CaptureFixture[str]) -> None:
    show(TextView(live=False), run_succeeded())
    assert capsys.readouterr().err == summary(run_succeeded()) + "\n"


@pytest.mark.parametrize(("changes", "match"), [
    ({"heartbeat_s": -1.0}, "heartbeat_s must be >= 0"),
    ({"width": 0}, "width must be a positive"),
])
def test_invalid_settings_are_rejected(changes: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TextView(io.StringIO(), **changes)  # type: ignore[arg-type]


# -- log mode -------------------------------------------------------------------------

def test_pending_run_prints_nothing() -> None:
    stream = io.StringIO()
    show(TextView(stream), pending())
    assert stream.getvalue() == ""


def test_run_start_prints_one_line() -> None:
    stream = io.StringIO()
    show(TextView(stream), pending(), started())
    assert stream.getvalue() == run_line(started()) + "\n"


def test_stage_start_prints_line_naming_it() -> None:
    stream = io.StringIO()
    show(TextView(stream), started(), load_running())
    assert stream.getvalue().splitlines()[-1].startswith("load  ▶ running")


def test_stage_finishing_prints_line_naming_it_and_its_state() -> None:
    stream = io.StringIO()
    show(TextView(stream), load_running(), load_succeeded(), train_failed())
    lines = stream.getvalue().splitlines()
    assert lines[-2].startswith("load  ✓ succeeded") and lines[-2].endswith("in 2.0s")
    assert lines[-1].startswith("train ✗ failed")


def test_run_end_prints_summary_with_error() -> None:
    stream = io.StringIO()
    show(TextView(stream), train_failed(), run_failed())
    assert stream.getvalue().endswith(summary(run_failed()) + "\n")
    assert "ValueError: bad batch" in stream.getvalue()


def test_skipped_stages_appear_only_in_summary() -> None:
    stream = io.StringIO()
    cancelled = with_stage(replace(load_succeeded(), state=RunState.CANCELLED), 1,
                           state=StageState.SKIPPED)
    show(TextView(stream), load_succeeded(), cancelled)
    assert stream.getvalue().splitlines()[1:] == summary(cancelled).splitlines()


def test_progress_lines_are_rate_limited_by_heartbeat(clock) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    view = TextView(stream, heartbeat_s=10.0, clock=clock)
    show(view, started(), load_running())
    before = len(stream.getvalue().splitlines())
    for second in range(1, 26):
        clock.tick(1.0)
        view(load_running(done=min(second, 9), elapsed_s=float(second)))
    progress = stream.getvalue().splitlines()[before:]
    # held at 9 steps from 9 s: at 20 s (11 s, eleven of its steps), its ETA is stale
    assert progress == [run_line(load_running(done=9, elapsed_s=10.0)),
                        run_line(load_running(done=9, elapsed_s=20.0), held_s=11.0)]
    assert progress[1].endswith("elapsed 20.0s no progress for 11.0s")


def test_transition_line_restarts_heartbeat(clock) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    view = TextView(stream, heartbeat_s=10.0, clock=clock)
    show(view, started())
    clock.tick(9.0)
    view(load_running())  # a transition line, written at t = 9
    clock.tick(9.0)
    view(load_running(done=5, elapsed_s=9.0))  # t = 18: only 9 s since the last line
    assert len(stream.getvalue().splitlines()) == 2


def test_log_output_has_no_control_characters(clock) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    view = TextView(stream, heartbeat_s=0.0, clock=clock)
    show(view, pending(), started(), load_running(), load_running(done=3, elapsed_s=1.0),
         load_succeeded(), train_failed(), run_failed())
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


# -- seen late, several runs, errors --------------------------------------------------

def test_late_subscriber_to_finished_run_prints_only_summary() -> None:
    stream = io.StringIO()
    show(TextView(stream), run_succeeded())
    assert stream.getvalue() == summary(run_succeeded()) + "\n"


def test_first_snapshot_mid_run_prints_where_run_stands() -> None:
    stream = io.StringIO()
    mid_run = load_running(done=5, elapsed_s=1.0)
    show(TextView(stream), mid_run)
    assert stream.getvalue() == run_line(mid_run) + "\n"


def test_runs_are_tracked_separately() -> None:
    stream = io.StringIO()
    show(TextView(stream), load_running("a"), load_running("b"), load_succeeded("a"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # each run's first sight, then one transition of run "a"
    assert lines[-1].startswith("load  ✓ succeeded")


def test_finished_run_is_forgotten() -> None:
    stream = io.StringIO()
    view = TextView(stream)
    show(view, run_succeeded(), run_succeeded())  # a second final is seen as a new run
    assert stream.getvalue() == 2 * (summary(run_succeeded()) + "\n")


def test_write_error_propagates() -> None:
    stream = io.StringIO()
    view = TextView(stream, live=False)
    stream.close()
    with pytest.raises(ValueError):
        view(run_succeeded())


# -- live mode ------------------------------------------------------------------------

def test_live_mode_rewrites_one_line_in_place() -> None:
    stream = FakeTTY()
    view = TextView(stream)
    show(view, load_running())
    stream.seek(0)
    stream.truncate()
    view(load_running(done=5, elapsed_s=1.0))
    assert stream.getvalue() == CLEAR + run_line(load_running(done=5, elapsed_s=1.0))


def test_live_mode_prints_transition_above_live_line() -> None:
    stream = FakeTTY()
    view = TextView(stream)
    show(view, load_running())
    stream.seek(0)
    stream.truncate()
    view(load_succeeded())
    first, live = stream.getvalue().split("\n")
    assert first.startswith(CLEAR + "load  ✓ succeeded")
    assert live == run_line(load_succeeded())


def test_live_mode_clears_line_and_prints_summary_at_end() -> None:
    stream = FakeTTY()
    view = TextView(stream)
    show(view, train_failed())
    stream.seek(0)
    stream.truncate()
    view(run_failed())
    assert stream.getvalue() == CLEAR + summary(run_failed()) + "\n"


def test_live_mode_draws_pending_run_without_newline() -> None:
    stream = FakeTTY()
    show(TextView(stream), pending())
    assert stream.getvalue() == CLEAR + run_line(pending())
