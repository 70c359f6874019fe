"""The ipywidgets view of a run (ipywidgets is imported here only).

Widgets are created on the kernel's main thread (where ``start()`` is called). Snapshots
arrive on the run's notifier thread; a ``Throttle`` applies the newest one at most
``refresh_hz`` times a second inside ``hold_sync()``, so each widget sends at most one
message per refresh and only for values that changed. Text that changes on every
refresh (counts, rates, inner loops, elapsed time) is rounded and redrawn at most
``text_hz`` times a second: a progress view must not cost more than a few KB/s.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..status import RunState, RunStatus, StageState, StageStatus
from . import format as fmt
from .chart import sparkline_svg
from .ipython import at_next_cell
from .throttle import Throttle

if TYPE_CHECKING:
    from ..engine.run import Run

__all__ = ["RunView"]

_BAR_STYLE = {
    StageState.RUNNING: "", StageState.SUCCEEDED: "success", StageState.FAILED: "danger",
    StageState.CANCELLED: "warning", StageState.PENDING: "", StageState.SKIPPED: "",
}
_COLOR = {
    "pending": "#888", "running": "#1976d2", "succeeded": "#2e7d32", "failed": "#c62828",
    "cancelled": "#ef6c00", "skipped": "#888",
}
_ICON = {"pending": "·", "running": "▶", "succeeded": "✓", "failed": "✗", "cancelled": "■",
         "skipped": "↷"}
_CSS = """<style>
.sw-indeterminate .progress-bar { width: 100% !important; opacity: .55;
  background-image: linear-gradient(45deg, rgba(255,255,255,.35) 25%, transparent 25%,
  transparent 50%, rgba(255,255,255,.35) 50%, rgba(255,255,255,.35) 75%, transparent 75%);
  background-size: 1rem 1rem; animation: sw-stripes 1s linear infinite; }
@keyframes sw-stripes { from { background-position: 1rem 0; } to { background-position: 0 0; } }
.sw-run .widget-html-content { line-height: 1.35; }
.sw-run pre { max-height: 18em; overflow: auto; font-size: 11px; margin: 0; }
</style>"""


def _state_html(state: str) -> str:
    return (f'<span style="color:{_COLOR[state]};font-weight:600">'
            f'{_ICON[state]} {state}</span>')


def _set(widget: w.Widget, **values: Any) -> None:
    """Assign only the traits that differ (traitlets would skip them too; this is explicit)."""
    for name, value in values.items():
        if getattr(widget, name) != value:
            setattr(widget, name, value)


class _StageRow:
    """One stage: state and name, a bar, counts/rate/ETA, metrics and message."""

    def __init__(self, stage: StageStatus) -> None:
        self.name = w.HTML(layout=w.Layout(width="14em", flex="0 0 auto"))
        self.bar = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(flex="1 1 auto",
                                                                   width="auto"))
        self.info = w.HTML(layout=w.Layout(width="18em", flex="0 0 auto"))
        self.extra = w.HTML(layout=w.Layout(width="22em", flex="0 0 auto", overflow="hidden"))
        self.box = w.HBox([self.name, self.bar, self.info, self.extra])
        self.draw(stage, text=True)

    def draw(self, stage: StageStatus, *, text: bool) -> None:
        fraction = stage.fraction
        unknown = fraction is None and stage.state is StageState.RUNNING
        if unknown and "sw-indeterminate" not in self.bar._dom_classes:
            self.bar.add_class("sw-indeterminate")
        elif not unknown and "sw-indeterminate" in self.bar._dom_classes:
            self.bar.remove_class("sw-indeterminate")
        with self.bar.hold_sync():
            _set(self.bar, value=_quantize(fraction or 0.0), bar_style=_BAR_STYLE[stage.state])
        state = stage.state.value
        if text or stage.state is not StageState.RUNNING:
            _set(self.name, value=f"{_ICON[state]} <b>{html.escape(stage.name)}</b>")
            _set(self.info, value=html.escape(_stage_info(stage)))
            extra = fmt.format_metrics(stage.metrics)
            if stage.message:
                extra = f"{extra}  {stage.message}".strip()
            _set(self.extra, value=f'<span style="color:#555">{html.escape(extra)}</span>')


def _quantize(fraction: float) -> float:
    """Round to half a percent: finer steps are invisible but would each cost a message."""
    return round(fraction * 200) / 200


def _stage_info(stage: StageStatus) -> str:
    state = stage.state
    if state is StageState.PENDING:
        return "pending"
    if state is StageState.SKIPPED:
        return "skipped"
    parts = [fmt.format_count(stage.done, stage.total, stage.unit)] \
        if stage.done or stage.total else []
    if state is StageState.RUNNING:
        if stage.rate:
            parts.append(fmt.format_rate(stage.rate, stage.unit))
        if stage.eta_s is not None:
            parts.append(f"eta {fmt.format_duration(round(stage.eta_s))}")
    else:
        parts.append(f"{state.value} in {fmt.format_duration(stage.elapsed_s)}")
    return " · ".join(parts)


class RunView:
    """A live ipywidgets view of one run: header, a row per stage, charts, log, errors.

    Display it with ``IPython.display.display(view)``; the text/plain and HTML beside
    the widget show the run's final status in saved notebooks (updated by display id).
    """

    def __init__(self, run: Run, *, refresh_hz: float = 10.0, text_hz: float = 1.0) -> None:
        self._run = run
        self.retries: list[Run] = []
        self._text_period_s = 1.0 / min(text_hz, refresh_hz)
        self._last_text = -float("inf")
        self._force_text = False
        self._handles: list[Any] = []
        status = run.status()
        self._title = w.HTML()
        self._overall = w.FloatProgress(min=0.0, max=1.0,
                                        layout=w.Layout(flex="1 1 auto", width="auto"))
        self._times = w.HTML(layout=w.Layout(width="20em"))
        self._cancel = w.Button(description="Cancel", icon="stop", button_style="warning",
                                tooltip="cancel this run (cooperative)")
        self._cancel.on_click(lambda _: self._run.cancel())
        _accept_clicks_on_any_shell(self._cancel)
        self._rows = [_StageRow(stage) for stage in status.stages]
        self._inner = w.HTML()
        self._charts = w.HTML()
        self._traceback = w.HTML()
        self._retry = w.Button(description="Retry", icon="redo", button_style="primary",
                               tooltip="start run.retry() from the failed stage")
        self._retry.on_click(lambda _: self._on_retry())
        self._error = w.Accordion(children=[w.VBox([self._traceback, self._retry])])
        self._error.set_title(0, "Error")
        self._error.layout.display = "none"
        self._log_text = w.HTML()
        self._log = w.Accordion(children=[self._log_text])
        self._log.set_title(0, "Log")
        self._log.layout.display = "none"
        self._summary = w.HTML()
        header = w.HBox([self._title, self._overall, self._times, self._cancel])
        self.widget = w.VBox(
            [w.HTML(_CSS), header, *[row.box for row in self._rows], self._inner,
             self._charts, self._log, self._error, self._summary],
            layout=w.Layout(width="100%"),
        )
        self.widget.add_class("sw-run")
        self._status = status
        self._unsubscribe: Any = lambda: None  # a finished run answers within subscribe()
        self._draw(status, text=True)
        self._throttle: Throttle[RunStatus] = Throttle(
            1.0 / refresh_hz, self._apply, name=f"stagewidget-view-{run.run_id[:8]}")
        self._unsubscribe = run.subscribe(self._on_status)

    def refresh(self) -> None:
        """Redraw every value from the run's current status now (from any thread)."""
        self._force_text = True
        self._throttle.submit(self._run.status(), urgent=True)

    def _on_status(self, status: RunStatus) -> None:
        """Observer (notifier thread): coalesce; the final state is drawn at once."""
        self._throttle.submit(status, urgent=status.done())

    # -- display ---------------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = fmt.summary(self._status) if self._status.done() \
            else fmt.run_line(self._status)
        bundle["text/html"] = f"<pre>{html.escape(bundle['text/plain'])}</pre>"
        return bundle

    def show(self) -> None:
        """Display the view in the current cell (keeps the handle to update the fallback)."""
        from IPython.display import display

        handle = display(self, display_id=True)
        if handle is not None:
            self._handles.append(handle)

    # -- updates (notifier or throttle thread) ---------------------------------------------
    def _apply(self, status: RunStatus) -> None:
        now = time.monotonic()
        transition = (status.state is not self._status.state
                      or status.current != self._status.current
                      or [s.state for s in status.stages] != [s.state for s in self._status.stages])
        text = (transition or self._force_text or status.done()
                or now - self._last_text >= self._text_period_s)
        self._force_text = False
        if text:
            self._last_text = now
        self._status = status
        self._draw(status, text=text)
        if status.done():
            self._unsubscribe()
            self._update_fallback()
            if self._handles:
                at_next_cell(self._update_fallback)

    def _update_fallback(self) -> None:
        """Update the text/plain and HTML beside the widget to the current status."""
        for handle in self._handles:
            handle.update(self)

    def _draw(self, status: RunStatus, *, text: bool) -> None:
        state = status.state.value
        for row, stage in zip(self._rows, status.stages):
            row.draw(stage, text=text)
        if text:
            with self._overall.hold_sync():
                _set(self._overall, value=_quantize(status.fraction),
                     bar_style=_BAR_STYLE[StageState(state)] if status.done() else "")
            _set(self._title, value=f"<b>{html.escape(status.pipeline)}</b> {_state_html(state)}")
            eta = "" if status.eta_s is None or status.done() else \
                f" · eta {fmt.format_duration(round(status.eta_s))}"
            _set(self._times, value=f"{status.fraction:.0%} · "
                                    f"{fmt.format_duration(round(status.elapsed_s))}{eta}")
            _set(self._inner, value=self._inner_html(status))
            _set(self._charts, value=self._charts_html(status))
            if status.logs:
                self._log.set_title(0, f"Log ({len(status.logs)} latest lines)")
                _set(self._log_text, value=f"<pre>{html.escape(chr(10).join(status.logs))}</pre>")
                _set(self._log.layout, display="")
        _set(self._cancel.layout, display="none" if status.done() else "")
        if status.done():
            self._draw_end(status)

    @staticmethod
    def _inner_html(status: RunStatus) -> str:
        stage = status.current_stage
        if stage is None or stage.state is not StageState.RUNNING or not stage.inner:
            return ""
        lines = [f"{'  ' * (i + 1)}↳ {level.desc or 'loop'} {fmt.bar(level.fraction, 16)} "
                 f"{fmt.format_count(level.done, level.total, level.unit)}"
                 for i, level in enumerate(stage.inner)]
        return f"<pre>{html.escape(chr(10).join(lines))}</pre>"

    @staticmethod
    def _charts_html(status: RunStatus) -> str:
        charts = [sparkline_svg(f"{stage.name}: {name}", values)
                  for stage in status.stages for name, values in stage.history.items()
                  if len(values) >= 2]
        return " ".join(charts)

    def _draw_end(self, status: RunStatus) -> None:
        if status.state is RunState.FAILED and status.error is not None:
            error = status.error
            where = f" in stage {error.stage!r}" if error.stage else ""
            self._error.set_title(0, f"Error{where}: {error.type}: {error.message}"[:120])
            _set(self._traceback, value=f"<pre>{html.escape(error.traceback)}</pre>")
            self._error.layout.display = ""
        if status.state is RunState.CANCELLED:
            self._error.set_title(0, "Cancelled: Retry resumes at the cancelled stage")
            self._error.layout.display = ""
        durations = " · ".join(
            f"{html.escape(s.name)} {fmt.format_duration(s.elapsed_s)}"
            for s in status.stages if s.state is not StageState.SKIPPED and s.started_at)
        _set(self._summary, value=f'<span style="color:#555">{durations}</span>')

    def _on_retry(self) -> None:
        """Start ``run.retry()`` and show its view inside this one.

        A click is handled outside any cell's execution, so a new ``display()`` would
        have no output area to go to: the retry's view is appended to this view.
        """
        self._retry.disabled = True
        retry = self._run.retry(display=False, refresh_hz=self._run.refresh_hz)
        self.retries.append(retry)
        view = RunView(retry, refresh_hz=self._run.refresh_hz)
        self.widget.children = (*self.widget.children, view.widget)

    def close(self) -> None:
        """Stop following the run and close the widgets (frees their comms)."""
        self._unsubscribe()
        _close_tree(self.widget)


def _accept_clicks_on_any_shell(button: w.Button) -> None:
    """Let the frontend's click reach the kernel on a subshell while the main shell is busy.

    ipykernel 7 routes a comm's incoming messages to the subshell that last published on
    it (``BaseComm._reply_subshell_id``): the main shell for a widget created in a cell.
    JupyterLab 4.6 sends widget messages on a subshell of its own; without the pin, a
    Cancel click during a blocking ``pipe.run()`` would wait behind the run it cancels.
    The button never publishes again (only its layout changes), so the pin stays off.
    Harmless on ipykernel 6, which has no subshells and no such attribute.
    """
    comm = getattr(button, "comm", None)
    if comm is not None and "_reply_subshell_id" in vars(comm):
        del comm._reply_subshell_id


def _close_tree(widget: w.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()
