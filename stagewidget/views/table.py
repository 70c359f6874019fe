"""``sw.runs()``: a table of this process's recent runs (live widget in a notebook)."""

from __future__ import annotations

import html
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..status import RunStatus
from . import format as fmt
from .ipython import in_widget_frontend

if TYPE_CHECKING:
    from ..engine.run import Run

__all__ = ["RunList"]


class RunList(list):  # type: ignore[type-arg]
    """A list of runs that shows itself as a table; live, with Cancel, in a notebook.

    ``history`` holds recorded runs (``sw.history()`` snapshots) shown below the live
    ones, newest first; the list itself holds only the live runs.
    """

    def __init__(self, runs: Iterable[Run] = (), history: Iterable[RunStatus] = ()) -> None:
        super().__init__(runs)
        self.history = list(history)

    def __repr__(self) -> str:
        lines = [f"{len(self)} run(s)"]
        for run in self:
            status = run.status()
            lines.append(f"{run.run_id[:8]}  {fmt.run_line(status)}")
        if self.history:
            lines.append(f"history: {len(self.history)} earlier run(s), newest first")
            lines.extend(f"{status.run_id[:8]}  {_when(status)}  {fmt.run_line(status)}"
                         for status in self.history)
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if not in_widget_frontend():
            print(repr(self))
            return
        display(RunsWidget(list(self), self.history).widget)


_BAR_STYLE = {"success": "success", "danger": "danger", "warning": "warning"}


class RunsWidget:
    """A live ipywidgets table of runs: pipeline, state, progress, elapsed, Cancel.

    Each row is redrawn from the snapshots the ticker delivers for its run (so at most
    that run's ``refresh_hz`` times a second); a row holds its run weakly, so the table,
    kept by the kernel's comm registry, never keeps a run's result alive.
    """

    def __init__(self, runs: list[Run], history: Iterable[RunStatus] = ()) -> None:
        import ipywidgets as w

        self._rows = []
        for run in runs:
            label = w.HTML(layout=w.Layout(width="22em"))
            bar = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(flex="1 1 auto", width="auto"))
            info = w.HTML(layout=w.Layout(width="16em"))
            cancel = w.Button(description="Cancel", icon="stop", button_style="warning",
                              layout=w.Layout(width="7em"))
            cancel.on_click(_canceller(weakref.ref(run)))
            row = (label, bar, info, cancel)
            self._rows.append(row)
            _draw_row(row, run.status())
            run.subscribe(lambda status, row=row: _draw_row(row, status))
        header = w.HTML(f"<b>{len(runs)} run(s) in this kernel</b>")
        parts = [header, *[w.HBox(list(row)) for row in self._rows]]
        recorded = list(history)
        if recorded:  # one static HTML table: a recorded run no longer changes
            parts.append(w.HTML(history_html(recorded)))
        self.widget = w.VBox(parts)


def history_html(history: list[RunStatus]) -> str:
    """The recorded runs as a small HTML table: when, pipeline, state, id, duration, error."""
    rows = "".join(
        f"<tr><td>{_when(s)}</td><td>{html.escape(s.pipeline)}</td>"
        f"<td>{fmt.state_symbol(s.state)} {s.state.value}</td>"
        f"<td><code>{s.run_id[:8]}</code></td><td>{fmt.format_duration(s.elapsed_s)}</td>"
        f"<td>{html.escape(_error(s))}</td></tr>"
        for s in history)
    return (f"<b>history: {len(history)} earlier run(s)</b><table>"
            "<tr><th>started</th><th>pipeline</th><th>state</th><th>run</th><th>took</th>"
            f"<th></th></tr>{rows}</table>")


def _when(status: RunStatus) -> str:
    """The run's creation time, local, to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(status.created_at))


def _error(status: RunStatus) -> str:
    error = status.error
    if error is None:
        return ""
    where = f" in {error.stage}" if error.stage else ""
    return f"{error.type}{where}: {' '.join(error.message.split())}"[:200]


def _canceller(ref: weakref.ref[Run]) -> Callable[[Any], None]:
    def cancel(_: Any) -> None:
        run = ref()
        if run is not None:
            run.cancel()

    return cancel


def _draw_row(row: tuple[Any, Any, Any, Any], status: RunStatus) -> None:
    """Show ``status`` in one row of the table (called from the ticker thread)."""
    label, bar, info, cancel = row
    label.value = (f"{html.escape(status.pipeline)} <code>{status.run_id[:8]}</code> "
                   f"{fmt.state_symbol(status.state)} {status.state.value}")
    bar.value = round(status.fraction, 2)
    bar.bar_style = _BAR_STYLE.get(fmt.state_tone(status.state), "")
    current = status.current_stage
    where = f"{current.name} · " if current is not None and not status.done() else ""
    info.value = html.escape(f"{where}{fmt.format_duration(status.elapsed_s)}")
    cancel.layout.display = "none" if status.done() else ""
