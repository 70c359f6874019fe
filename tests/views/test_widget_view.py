"""The ipywidgets view with real widget objects (no kernel: comms are inert)."""

from __future__ import annotations

import re
import threading

from conftest import WAIT_S

import stagewidget as sw
from stagewidget import RunState
from stagewidget.views.widget import RunView


def view_of(pipe: sw.Pipeline, data=None, *, launch: bool = True) -> tuple[sw.Run, RunView]:
    """Start ``pipe`` paused at its start so the view subscribes before anything runs."""
    run = sw.Run(pipe, pipe.stages, data, executor=sw.ThreadExecutor(), refresh_hz=50,
                 clock=__import__("time").time)
    view = RunView(run)
    if launch:
        run.launch()
    return run, view


ROW = re.compile(r'<div class="sw-r sw-(?P<tone>\w+)[^"]*"><b><em>[^<]*</em>(?P<name>[^<]*)</b>'
                 r'<i(?P<classes> class=u)?><i(?: style=width:(?P<width>[^>]*))?></i></i>')


def cells(html: str) -> list[dict[str, str]]:
    """The rows drawn in a widget's HTML: name, tone, bar classes and width, text."""
    return [{**m.groupdict(), "width": m["width"] or "0%"} for m in ROW.finditer(html)]


def test_finished_run_shows_every_stage_succeeded_and_a_summary() -> None:
    pipe = sw.Pipeline("train-model", [sw.Stage(lambda x: x + 1, name="load"),
                                       sw.Stage(lambda x: x * 2, name="fit")])
    run, view = view_of(pipe, 1)
    run.wait(WAIT_S)
    rows = cells(view._table.value)
    assert [(r["name"], r["tone"], r["width"]) for r in rows] == [
        ("load", "success", "100%"), ("fit", "success", "100%")]
    [header] = cells(view._live.value)
    assert header["name"] == "train-model succeeded"
    assert header["width"] == "100%"
    assert "sw-hide" in view._cancel._dom_classes and "sw-hide" in view._retry._dom_classes
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
    assert [r["tone"] for r in cells(view._table.value)] == ["success", "danger"]
    extra = view._extra.value
    assert "learning rate too high" in extra and "Traceback" in extra
    assert "<summary>Error in stage &#x27;fit&#x27;: ValueError" in extra
    assert "sw-hide" not in view._retry._dom_classes
    broken["yes"] = False
    view._retry.click()
    assert len(view.retries) == 1
    assert view.retries[0].result(WAIT_S) == 3
    assert view._retry.disabled
    assert view._grid.children[-1].layout is not None and len(view._grid.children) == 7


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
    assert [r["tone"] for r in cells(view._table.value)] == ["warning"]
    assert "Cancelled: Retry resumes" in view._extra.value


def test_unknown_total_draws_an_indeterminate_bar_and_metrics_draw_charts(recorder) -> None:
    release = threading.Event()

    def stream(_):
        for i in sw.track(i for i in range(10**9)):  # a generator: no total
            if i < 5:
                sw.report(loss=1.0 / (i + 1))
            if i == 5:
                assert release.wait(WAIT_S)
                return i

    run, view = view_of(sw.Pipeline("p", [stream]))
    run.subscribe(recorder)  # called after the view, on the same thread
    recorder.wait_for(lambda s: len(s.stages[0].history.get("loss", ())) == 5)
    view.refresh()
    [_, running] = cells(view._live.value)
    assert running["name"] == "stream" and running["classes"]
    assert "<svg" in view._extra.value and "stream: loss" in view._extra.value
    release.set()
    run.wait(WAIT_S)
    assert [r["classes"] for r in cells(view._table.value)] == [None]


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
        assert "disk almost full" in view._extra.value
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
    cancel = table._rows[0][3]
    assert table._rows[1][3].layout.display == "none"  # nothing to cancel
    cancel.click()
    assert running.wait(WAIT_S).state is RunState.CANCELLED
    assert "cancelled" in table._rows[0][0].value  # drawn from the delivered final status
    assert table._rows[0][3].layout.display == "none"


def test_the_runs_table_does_not_keep_its_runs_alive() -> None:
    import gc
    import weakref

    from stagewidget.engine.run import KEPT_RUNS
    from stagewidget.views.table import RunsWidget

    pipe = sw.Pipeline("tabled", [sw.Stage(lambda x: bytearray(10), name="make")])
    run = pipe.start(None, display=False)
    run.wait(WAIT_S)
    table = RunsWidget([run])
    ref = weakref.ref(run)
    del run
    for _ in range(KEPT_RUNS):  # newer runs push it out of the kept recent runs
        pipe.start(None, display=False).wait(WAIT_S)
    gc.collect()
    assert ref() is None
    assert "succeeded" in table._rows[0][0].value
