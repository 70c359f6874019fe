"""The ipywidgets view of a run (ipywidgets is imported here only).

A lean view: eleven widget models whatever the number of stages. The rows are HTML
(drawn from ``format.py``) laid out as one CSS grid (state and name, bar, figures,
metrics), split over three HTML widgets by how often they change, so that a refresh
sends one small message:

- ``live``: the header row and the running stage's row (they change on every refresh);
- ``table``: the other stages' rows (they change on transitions);
- ``extra``: metric charts, the latest log lines, the error and the stage durations;
- ``css``: the style sheet (sent once).

The HTML widgets' boxes are ``display: contents``, so their cells are items of the one
grid. Items keep their document order (live, Cancel, table, extra, Retry) except where
a class moves them: the running stage's cells (``sw-y``) come after the rows before it,
the rows after it (``sw-z``) after those, the extra cells (``sw-x``) last. So the Cancel
button is the header row's last cell, at the right edge (its column is never narrower
than the button: the metrics cells sharing it clip instead), and a saved final view
carries no positions at all. In a narrow panel (two columns) it gets a line of its
own, at the right edge too. Layout and style models are shared by all the widgets.

Widgets are created on the kernel's main thread (where ``start()`` is called). Snapshots
arrive on the run's delivery thread, which paces them (at most ``refresh_hz`` a second
plus transitions); only the values that changed are sent: one message per changed
widget (each HTML widget has a single value, so no ``hold_sync()`` is needed), in
steady running only ``live``. A message is mostly protocol (about 600 bytes of headers
for a 250-byte row), so the view also skips deliveries a reader would not miss: see
``RunView`` for the live row's and the charts' cadences.

The view holds its run weakly: a view kept alive by the kernel's comm registry does not
keep the run, nor its result, alive. Cancel on a run already gone does nothing; Retry
on a run gone is disabled with a tooltip saying why.
"""

from __future__ import annotations

import html
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from ipywidgets.widgets.widget_string import HTMLStyle

from ..status import RunState, RunStatus, StageState, StageStatus
from . import format as fmt
from .chart import MAX_POINTS, sparkline_svg

if TYPE_CHECKING:
    from ..engine.run import Run

__all__ = ["RunView"]

EXTRA_PERIOD_S = 1.0  # the charts and log panel: at most one redraw a second, see RunView
BAR_PERIOD_S = 0.2  # the live row when a bar moved: at most five redraws a second
TEXT_PERIOD_S = 0.5  # the live row when only its figures changed: at most two a second
LOG_LINES_SHOWN = 8  # the log panel's latest lines: what a saved notebook keeps
LOG_LINE_CHARS = 240
TRACEBACK_CHARS = 3000  # the traceback's last characters (its user frames and error)
CHART_POINTS = 96  # points shared by all the charts of a view (each gets 8 to 32)
MIN_CHART_POINTS = 8

# A tone from format.STATE_TONES -> a theme colour. JupyterLab, Notebook 7 and Voila define
# every --jp- variable used here (light and dark), so the style sheet has no fallbacks.
_TONES = {
    "active": "var(--jp-brand-color1)",
    "success": "var(--jp-success-color1)",
    "danger": "var(--jp-error-color1)",
    "warning": "var(--jp-warn-color1)",
    "muted": "var(--jp-ui-font-color3)",
}
# ``pre`` sets its own line-height: Voila's ``.jp-OutputArea-output pre {line-height:
# inherit}`` would give it ipywidgets' 28px (``.widget-html-content``), one line in two.
_CSS = "<style>" + "".join(f".sw-{tone}{{--sw-c:{color}}}" for tone, color in _TONES.items()) + """
.sw-run{container-type:inline-size;width:100%}
.sw-run .sw-grid{display:grid;grid-template-columns:minmax(0,max-content) minmax(6em,1fr)
 minmax(0,max-content) minmax(auto,max-content);gap:3px .9em;align-items:center;width:100%;
 color:var(--jp-ui-font-color1);font-size:var(--jp-widgets-font-size);line-height:1.4}
.sw-grid>.widget-html,.sw-grid>.widget-html>.widget-html-content{display:contents}
.sw-r{display:contents}.sw-x{order:3}.sw-y>*{order:1}.sw-z>*{order:2}
.sw-grid>.widget-button{margin:0;width:auto;min-width:max-content;justify-self:end}
.sw-grid>.sw-retry{order:4;grid-column:1/-1;justify-self:start}
.sw-grid>.sw-run{order:5;grid-column:1/-1}
.sw-r>b{grid-column:1;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.sw-r>b>em{font-style:normal;color:var(--sw-c);margin-right:.3em}
.sw-r>i{display:block;height:.75em;border-radius:3px;overflow:hidden;
 background:var(--jp-layout-color3)}
.sw-r>i>i{display:block;width:0;height:100%;background:var(--sw-c)}
.sw-danger>i,.sw-warning>i{box-shadow:inset 0 0 0 1px var(--sw-c)}
.sw-r>i.u>i{width:100%!important;opacity:.6;animation:sw-s 1s linear infinite;
 background:repeating-linear-gradient(-45deg,#fff6 0 .35em,#0000 0 .7em) var(--sw-c)}
@keyframes sw-s{to{background-position:1em 0}}
.sw-r>span,.sw-r>small{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;font-size:inherit;
 font-variant-numeric:tabular-nums;color:var(--jp-ui-font-color2)}
.sw-x,.sw-r>div{grid-column:1/-1;min-width:0;color:var(--jp-ui-font-color2)}
.sw-run .sw-grid pre{max-height:12em;overflow:auto;font-size:11px;line-height:1.3;margin:0}
.sw-x svg{margin-right:.6em}
.sw-chart polyline{fill:none;stroke-width:1.5;stroke:var(--jp-brand-color1)}
.sw-chart text{font-size:10px;fill:currentColor}
.sw-x summary{cursor:pointer;color:var(--sw-c,inherit)}
.sw-hide{display:none!important}
@container (max-width:480px){.sw-run .sw-grid{grid-template-columns:minmax(0,max-content)
 minmax(40%,1fr)}.sw-r>span,.sw-r>small{grid-column:1/-1;padding-left:1.3em}
 .sw-grid>.widget-button{grid-column:1/-1}}
</style>"""
_CSS = _CSS.replace("\n ", " ").replace("\n", "")


def _set(widget: w.Widget, **values: Any) -> None:
    """Assign only the traits that differ (traitlets would skip them too; this is explicit)."""
    for name, value in values.items():
        if getattr(widget, name) != value:
            setattr(widget, name, value)


def _percent(fraction: float) -> str:
    """A bar width: half a percent steps (finer ones are invisible but cost messages)."""
    return f"{round(min(max(fraction, 0.0), 1.0) * 200) / 2:g}%"


def _row(cells: str, *classes: str) -> str:
    """A row of grid cells; its box is ``display: contents``; it gives them a tone and place.

    Cells are told apart by their tag, to keep each refresh's message small: ``b`` the
    state and name, ``i`` the bar (its inner ``i`` the filled part), ``span`` the figures,
    ``small`` the metrics and message, ``div`` a full-width line (nested loops).
    """
    names = " ".join(["sw-r", *(f"sw-{name}" for name in classes if name)])
    return f'<div class="{names}">{cells}</div>'


def _bar(fraction: float | None, *, unknown: bool = False) -> str:
    width = f" style=width:{_percent(fraction)}" if fraction else ""
    return f"<i{' class=u' if unknown else ''}><i{width}></i></i>"


def _name(symbol: str, name: str) -> str:
    return f"<b><em>{symbol}</em>{html.escape(name)}</b>"


def header_html(status: RunStatus, held_s: float = 0.0) -> str:
    """The header row: pipeline and state, the overall bar, percent, elapsed time, ETA.

    ``held_s``: how long the running stage has made no progress (``fmt.progress_held``).
    """
    figures = fmt.run_figures(status, held_s)
    return _row(_name(fmt.state_symbol(status.state), f"{status.pipeline} {status.state.value}")
                + _bar(status.fraction) + f"<span>{html.escape(figures)}</span>",
                fmt.state_tone(status.state))


def stage_html(stage: StageStatus, place: str = "", held_s: float = 0.0) -> str:
    """One stage's row: state and name, its bar, its figures, its metrics and message.

    ``place`` is ``y`` for the running stage's row, ``z`` for a row after it, else empty;
    ``held_s`` as in ``header_html``. The running stage's nested loops (``↳ steps ███
    12/40``) follow, full width.
    """
    unknown = stage.fraction is None and stage.state is StageState.RUNNING
    cells = (_name(fmt.state_symbol(stage.state), stage.name)
             + _bar(stage.fraction, unknown=unknown)
             + f"<span>{html.escape(fmt.stage_figures(stage, held_s))}</span>")
    extra = fmt.format_metrics(stage.metrics)
    if stage.message:
        extra = f"{extra}  {' '.join(stage.message.split())}".strip()
    if extra:  # a row may end early: the next row's name cell starts a new grid line
        cells += f"<small>{html.escape(extra)}</small>"
    if stage.state is StageState.RUNNING and stage.inner:
        lines = [f"{'  ' * (i + 1)}↳ {level.desc or 'loop'} {fmt.bar(level.fraction, 16)} "
                 f"{fmt.format_count(level.done, level.total, level.unit)}"
                 for i, level in enumerate(stage.inner)]
        cells += f"<div><pre>{html.escape(chr(10).join(lines))}</pre></div>"
    return _row(cells, fmt.stage_tone(stage), place)


def extra_html(status: RunStatus) -> str:
    """Below the stages: metric charts, the latest log lines, the error, the durations."""
    parts = []
    series = [(f"{stage.name}: {name}", values) for stage in status.stages
              for name, values in stage.history.items() if len(values) >= 2]
    # the more charts, the fewer points each: all of them fit in CHART_POINTS points
    points = max(MIN_CHART_POINTS, min(MAX_POINTS, CHART_POINTS // max(len(series), 1)))
    charts = [sparkline_svg(name, values, max_points=points) for name, values in series]
    if charts:
        parts.append("".join(charts))
    if status.logs:
        lines = [line if len(line) <= LOG_LINE_CHARS else line[:LOG_LINE_CHARS - 1] + "…"
                 for line in status.logs[-LOG_LINES_SHOWN:]]
        total = max(status.logs_total, len(status.logs))
        title = f"Log ({len(lines)} latest of {total} lines; all in run.status().logs)" \
            if total > len(lines) else f"Log ({len(lines)} line{'s' if len(lines) > 1 else ''})"
        parts.append(f"<div>{title}</div><pre>{html.escape(chr(10).join(lines))}</pre>")
    if status.state is RunState.FAILED and status.error is not None:
        error = status.error
        where = f" in stage {error.stage!r}" if error.stage else ""
        title = f"Error{where}: {error.type}: {' '.join(error.message.split())}"[:160]
        trace = error.traceback
        if len(trace) > TRACEBACK_CHARS:
            trace = "…\n" + trace[-TRACEBACK_CHARS:]
        parts.append(f'<details class="sw-danger"><summary>{html.escape(title)}</summary>'
                     f"<pre>{html.escape(trace)}</pre></details>")
    elif status.state is RunState.CANCELLED:
        parts.append('<b class="sw-warning" style="color:var(--sw-c)">Cancelled: Retry resumes '
                     "at the cancelled stage</b>")
    if status.done():
        durations = " · ".join(
            f"{html.escape(s.name)} {fmt.format_duration(s.elapsed_s)}"
            for s in status.stages if s.state is not StageState.SKIPPED and s.started_at)
        parts.append(f"<div>{durations}</div>")
    return "".join(f"<div class=sw-x>{part}</div>" for part in parts)


def _bars(status: RunStatus) -> tuple[object, ...]:
    """The bar widths the live row draws: the overall one, the running stage's, its loops'."""
    stage = status.current_stage if status.state is RunState.RUNNING else None
    if stage is None:
        return (_percent(status.fraction),)
    fraction = stage.fraction
    return (_percent(status.fraction), None if fraction is None else _percent(fraction),
            *(fmt.bar(level.fraction, 16) for level in stage.inner))


def _between_stages(status: RunStatus) -> bool:
    """A running run with no stage running: one stage just ended, the driver is moving on.

    The view skips such a snapshot (the next stage's start, or the run's end, comes
    microseconds later), so a stage change costs one redraw, not two.
    """
    return status.state is RunState.RUNNING and not any(
        stage.state is StageState.RUNNING for stage in status.stages)


class RunView:
    """A live ipywidgets view of one run: header, a row per stage, charts, log, errors.

    Display it with ``IPython.display.display(view)``; the text/plain and HTML beside
    the widget show the run's final status in saved notebooks (updated by display id).
    ``refresh_hz`` is accepted for callers of earlier versions: the run's delivery thread
    paces the updates.

    Cadences: a transition (the run or a stage changes state, or its error arrives)
    and the final status are drawn at once. Between transitions, the live row (header
    and running stage) is redrawn when a bar moved and ``BAR_PERIOD_S`` passed since its
    last redraw, or when only its figures changed (counts, rate, elapsed time, ETA) and
    ``TEXT_PERIOD_S`` passed: a fast loop at 10 Hz would otherwise send ten messages a
    second of which a reader sees the tenths of a second change. The charts and log
    panel (a few KB) is redrawn when it changed and ``EXTRA_PERIOD_S`` passed: a stage
    reporting metrics on every step would otherwise resend every chart on every
    refresh. No timer: what was skipped is drawn by the next delivery (the ticker
    delivers at least once a second while running), the final one at the latest.
    ``clock`` (seconds) is injectable for tests.
    """

    def __init__(self, run: Run, *, refresh_hz: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._run: weakref.ref[Run] = weakref.ref(run)
        self._clock = clock
        self._extra_at = -math.inf
        self._stages_at_extra: tuple[object, ...] = ()
        self._live_at = -math.inf
        self._bars_at_live: tuple[object, ...] = ()
        self._held: tuple[object, float] | None = None  # see fmt.progress_held
        self._retries: list[weakref.ref[Run]] = []
        self._handles: list[Any] = []
        # The view's own lock: it orders refresh() (any thread) against the delivery
        # thread's updates; it is never held while calling the run.
        self._lock = threading.Lock()
        layout, style, button_style = w.Layout(), HTMLStyle(), w.ButtonStyle()
        self._live = w.HTML(layout=layout, style=style)
        self._table = w.HTML(layout=layout, style=style)
        self._extra = w.HTML(layout=layout, style=style)
        css = w.HTML(_CSS, layout=layout, style=style)
        self._cancel = w.Button(description="Cancel", icon="stop", button_style="warning",
                                tooltip="cancel this run (cooperative)",
                                layout=layout, style=button_style)
        self._cancel.on_click(lambda _: self._on_cancel())
        _accept_clicks_on_any_shell(self._cancel)
        self._retry = w.Button(description="Retry", icon="redo", button_style="primary",
                               tooltip="start run.retry() from the failed stage",
                               layout=layout, style=button_style)
        self._retry.add_class("sw-retry")
        self._retry.add_class("sw-hide")
        self._retry.on_click(lambda _: self._on_retry())
        self._grid = w.VBox([css, self._live, self._cancel, self._table, self._extra,
                             self._retry],
                            layout=layout)
        self._grid.add_class("sw-grid")
        self.widget = w.VBox([self._grid], layout=layout)
        self.widget.add_class("sw-run")
        self._closed = False
        self._status = run.status()
        self._draw(self._status)
        # The unsubscribe function is not kept: it would hold the run (through its
        # notifier). The run holds the view until it ends; close() mutes the view.
        run.subscribe(self._on_status)

    @property
    def retries(self) -> list[Run]:
        """The runs started by this view's Retry button that are still alive."""
        return [run for ref in self._retries if (run := ref()) is not None]

    def refresh(self) -> None:
        """Redraw every value from the run's current status now (from any thread)."""
        run = self._run()
        if run is not None:
            self._apply(run.status(), force=True)

    def _on_status(self, status: RunStatus) -> None:
        """Observer (delivery thread): draw what changed in ``status`` (see the cadences)."""
        self._apply(status, force=False)

    def _apply(self, status: RunStatus, *, force: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._status = status
            if _between_stages(status) and not force:
                return  # the next stage's start (or the run's end) follows at once
            self._draw(status, force=force)
        if status.done():
            self._update_fallback()
            _when_a_cell_ends_or_starts(self._send_final)

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

    def _update_fallback(self) -> None:
        """Update the text/plain and HTML beside the widget to the current status."""
        for handle in self._handles:
            handle.update(self)

    def _send_final(self) -> None:
        """Send the final view again (main thread, in a cell): a notebook executor saves it.

        Messages sent from the delivery thread carry the parent of the cell that started
        the run; nbclient (nbconvert, papermill) ignores them once that cell is done, so
        its saved widget state and text would show the run unfinished.
        """
        self._update_fallback()
        for widget in (self._live, self._table, self._extra, self._cancel, self._retry):
            widget.send_state()

    # -- drawing (under the view's lock) ---------------------------------------------------
    def _draw(self, status: RunStatus, *, force: bool = False) -> None:
        current = status.current if status.state is RunState.RUNNING else None
        stages = (status.state, status.error is not None,
                  *(stage.state for stage in status.stages))
        now = self._clock()
        moved = force or status.done() or stages != self._stages_at_extra
        extra = None
        if moved or now - self._extra_at >= EXTRA_PERIOD_S:
            extra = extra_html(status)
            self._stages_at_extra = stages
            if extra == self._extra.value:
                extra = None
        self._held, held_s = fmt.progress_held(status, self._held)
        bars = _bars(status)
        since = now - self._live_at
        if moved or since >= TEXT_PERIOD_S or (
                since >= BAR_PERIOD_S and bars != self._bars_at_live):
            self._draw_rows(status, current, held_s)
            self._live_at, self._bars_at_live = now, bars
        if extra is not None:
            self._extra.value = extra
            self._extra_at = now
        if status.done():
            self._draw_end(status)

    def _draw_rows(self, status: RunStatus, current: int | None, held_s: float) -> None:
        live = header_html(status, held_s)
        table = []
        for index, stage in enumerate(status.stages):
            if index == current:
                live += stage_html(stage, "y", held_s)
            else:
                table.append(stage_html(stage, "z" if current is not None and index > current
                                        else ""))
        _set(self._live, value=live)
        _set(self._table, value="".join(table))

    def _draw_end(self, status: RunStatus) -> None:
        self._cancel.add_class("sw-hide")
        if status.state in (RunState.FAILED, RunState.CANCELLED) and not self._retries:
            if self._run() is None:
                self._retry_gone()
            self._retry.remove_class("sw-hide")

    def _retry_gone(self) -> None:
        _set(self._retry, disabled=True,
             tooltip="the run is gone (nothing kept a reference to it): start it again")

    # -- buttons (the kernel's main thread or a subshell) ----------------------------------
    def _on_cancel(self) -> None:
        run = self._run()
        if run is not None:
            run.cancel()

    def _on_retry(self) -> None:
        """Start ``run.retry()`` and show its view inside this one.

        A click is handled outside any cell's execution, so a new ``display()`` would
        have no output area to go to: the retry's view is appended to this view.
        """
        run = self._run()
        if run is None:
            self._retry_gone()
            return
        self._retry.disabled = True
        retry = run.retry(display=False, refresh_hz=run.refresh_hz)
        self._retries.append(weakref.ref(retry))
        view = RunView(retry)
        self._grid.children = (*self._grid.children, view.widget)

    def close(self) -> None:
        """Stop following the run and close the widgets (frees their comms)."""
        with self._lock:
            self._closed = True
        _close_tree(self.widget)


def _accept_clicks_on_any_shell(button: w.Button) -> None:
    """Let the frontend's click reach the kernel on a subshell while the main shell is busy.

    ipykernel 7 routes a comm's incoming messages to the subshell that last published on
    it (``BaseComm._reply_subshell_id``): the main shell for a widget created in a cell.
    JupyterLab 4.6 sends widget messages on a subshell of its own; without the pin, a
    Cancel click during a blocking ``pipe.run()`` would wait behind the run it cancels.
    The button never publishes again (only its classes change), so the pin stays off.
    Harmless on ipykernel 6, which has no subshells and no such attribute.
    """
    comm = getattr(button, "comm", None)
    if comm is not None and "_reply_subshell_id" in vars(comm):
        del comm._reply_subshell_id


def _when_a_cell_ends_or_starts(callback: Any) -> None:
    """Call ``callback()`` once on the main thread, when the running cell ends or the next
    starts: either way inside a cell, whose parent a notebook executor listens to."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    events = ("post_run_cell", "pre_run_cell")

    def once(*_: Any) -> None:
        for event in events:
            shell.events.unregister(event, once)
        callback()

    for event in events:
        shell.events.register(event, once)


def _close_tree(widget: w.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    for part in ("layout", "style"):
        shared = getattr(widget, part, None)
        if isinstance(shared, w.Widget):
            shared.close()
    widget.close()
