"""``sw.runs()``: a table of this process's recent runs (live widget in a notebook)."""

from __future__ import annotations

import html
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..status import RunStatus
from . import format as fmt
from .ipython import in_widget_frontend

if TYPE_CHECKING:
    from ..engine.run import Run

__all__ = ["RunList"]


class RunList(list):  # type: ignore[type-arg]
    """A list of runs that shows itself as a table; live, with Cancel, in a notebook."""

    def __repr__(self) -> str:
        lines = [f"{len(self)} run(s)"]
        for run in self:
            status = run.status()
            lines.append(f"{run.run_id[:8]}  {fmt.run_line(status)}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if not in_widget_frontend():
            print(repr(self))
            return
        display(RunsWidget(list(self)).widget)


_BAR_STYLE = {"success": "success", "danger": "danger", "warning": "warning"}


class RunsWidget:
    """A live ipywidgets table of runs: pipeline, state, progress, elapsed, Cancel.

    Each row is redrawn from the snapshots the ticker delivers for its run (so at most
    that run's ``refresh_hz`` times a second); a row holds its run weakly, so the table,
    kept by the kernel's comm registry, never keeps a run's result alive.
    """

    def __init__(self, runs: list[Run]) -> None:
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
        self.widget = w.VBox([header, *[w.HBox(list(row)) for row in self._rows]])


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
