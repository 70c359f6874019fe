"""The ipywidgets view with real widget objects (no kernel: comms are inert)."""

from __future__ import annotations

import threading

from conftest import WAIT_S

import stagewidget as sw
from stagewidget import RunState
from stagewidget.views.throttle import Throttle
from stagewidget.views.widget import RunView


def view_of(pipe: sw.Pipeline, data=None, **options) -> tuple[sw.Run, RunView]:
    """Start ``pipe`` paused at its start so the view subscribes before anything runs."""
    run = sw.Run(pipe, pipe.stages, data, executor=sw.ThreadExecutor(), refresh_hz=50,
                 clock=__import__("time").time)
    view = RunView(run, refresh_hz=50, **options)
    run.launch()
    return run, view


def all_text(view: RunView) -> str:
    parts = []

    def walk(widget):
        value = getattr(widget, "value", None)
        if isinstance(value, str):
            parts.append(value)
        for child in getattr(widget, "children", ()):
            walk(child)

    walk(view.widget)
    return "\n".join(parts)


def test_finished_run_shows_every_stage_succeeded_and_a_summary() -> None:
    pipe = sw.Pipeline("train-model", [sw.Stage(lambda x: x + 1, name="load"),
                                       sw.Stage(lambda x: x * 2, name="fit")])
    run, view = view_of(pipe, 1)
    run.wait(WAIT_S)
    assert [row.bar.bar_style for row in view._rows] == ["success", "success"]
    assert [row.bar.value for row in view._rows] == [1.0, 1.0]
    assert view._overall.value == 1.0
    assert "succeeded" in view._title.value and "train-model" in view._title.value
    assert view._cancel.layout.display == "none"
    bundle = view._repr_mimebundle_()
    assert bundle["text/plain"].startswith("train-model succeeded in")
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_failed_run_shows_traceback_and_retry_starts_a_new_run_inside_the_view() -> None:
    broken = {"yes": True}

    def fit(x):
        if broken["yes"]:
            raise ValueError("learning rate too high")
        return x

    pipe = sw.Pipeline("p", [sw.Stage(lambda x: x, name="load"), fit])
    run, view = view_of(pipe, 3)
    run.wait(WAIT_S)
    assert view._rows[1].bar.bar_style == "danger"
    assert view._error.layout.display == ""
    assert "learning rate too high" in view._traceback.value
    assert "Traceback" in view._traceback.value
    assert "fit" in view._error.get_title(0)
    broken["yes"] = False
    view._retry.click()
    assert len(view.retries) == 1
    assert view.retries[0].result(WAIT_S) == 3
    assert view.widget.children[-1] is not None and len(view.widget.children) > 1


def test_cancel_button_cancels_the_run() -> None:
    inside = threading.Event()

    def spin(_):
        inside.set()
        for _ in sw.track(iter(int, 1)):
            pass

    run, view = view_of(sw.Pipeline("p", [spin]))
    assert inside.wait(WAIT_S)
    view._cancel.click()
    assert run.wait(WAIT_S).state is RunState.CANCELLED
    assert view._rows[0].bar.bar_style == "warning"
    assert "Cancelled" in view._error.get_title(0)


def test_unknown_total_draws_an_indeterminate_bar_and_metrics_draw_charts(recorder) -> None:
    release = threading.Event()

    def stream(_):
        for i in sw.track(i for i in range(10**9)):  # a generator: no total
            if i < 5:
                sw.report(loss=1.0 / (i + 1))
            if i == 5:
                assert release.wait(WAIT_S)
                return i

    run, view = view_of(sw.Pipeline("p", [stream]), text_hz=50)
    run.subscribe(recorder)  # called after the view, on the same thread
    recorder.wait_for(lambda s: len(s.stages[0].history.get("loss", ())) == 5)
    view.refresh()
    assert "sw-indeterminate" in view._rows[0].bar._dom_classes
    assert "<svg" in view._charts.value and "stream: loss" in view._charts.value
    release.set()
    run.wait(WAIT_S)
    assert "sw-indeterminate" not in view._rows[0].bar._dom_classes


def test_throttle_coalesces_to_the_latest_value_and_applies_urgent_at_once() -> None:
    applied = []
    fired = threading.Event()
    now = [0.0]

    def apply(value):
        applied.append(value)
        if value == "late":
            fired.set()

    throttle = Throttle(0.05, apply, clock=lambda: now[0])
    throttle.submit("first")
    throttle.submit("dropped")
    throttle.submit("late")
    assert applied == ["first"]
    assert fired.wait(WAIT_S)
    assert applied == ["first", "late"]
    throttle.submit("next")
    throttle.submit("final", urgent=True)
    assert applied[-1] == "final"
    assert "dropped" not in applied


def test_stage_logging_goes_to_the_run_log_panel_not_to_stderr(capsys) -> None:
    import logging

    from stagewidget.engine.logs import capture_logs

    root = logging.getLogger()
    saved, root.handlers = root.handlers, []  # as in a fresh kernel: no logging set up
    handler = capture_logs()
    try:
        def noisy(x):
            logging.getLogger("user.stage").warning("disk almost full: %d%%", 93)
            return x

        run, view = view_of(sw.Pipeline("p", [noisy]), 1)
        status = run.wait(WAIT_S)
        assert any("disk almost full: 93%" in line for line in status.logs)
        assert "disk almost full" in view._log_text.value
        assert view._log.layout.display == ""
        assert "disk almost full" not in capsys.readouterr().err
        logging.getLogger("user.outside").warning("outside any stage")
        assert "outside any stage" in capsys.readouterr().err  # as Python would print it
    finally:
        root.removeHandler(handler)
        root.handlers = saved


def test_runs_lists_recent_runs_with_a_live_cancel_table() -> None:
    from stagewidget.views.table import RunsWidget

    inside = threading.Event()

    def spin(_):
        inside.set()
        for _ in sw.track(iter(int, 1)):
            pass

    running = sw.Pipeline("spinner", [spin]).start(None, display=False)
    finished = sw.Pipeline("quick", [sw.Stage(lambda x: x, name="id")]).start(1, display=False)
    finished.wait(WAIT_S)
    listed = sw.runs()
    assert listed[-2:] == [running, finished]
    assert "spinner" in repr(listed) and "succeeded" in repr(listed)
    table = RunsWidget([running, finished])
    assert inside.wait(WAIT_S)
    cancel = table._rows[0][4]
    assert table._rows[1][4].layout.display == "none"  # nothing to cancel
    cancel.click()
    assert running.wait(WAIT_S).state is RunState.CANCELLED
