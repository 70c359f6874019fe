"""``sw.runs()``: a table of this process's recent runs (live widget in a notebook)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from . import format as fmt
from .ipython import in_widget_frontend
from .throttle import Throttle

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


class RunsWidget:
    """A live ipywidgets table of runs: pipeline, state, progress, elapsed, Cancel."""

    def __init__(self, runs: list[Run], *, refresh_hz: float = 2.0) -> None:
        import ipywidgets as w

        self._runs = runs
        self._rows = []
        for run in runs:
            label = w.HTML(layout=w.Layout(width="22em"))
            bar = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(flex="1 1 auto", width="auto"))
            info = w.HTML(layout=w.Layout(width="16em"))
            cancel = w.Button(description="Cancel", icon="stop", button_style="warning",
                              layout=w.Layout(width="7em"))
            cancel.on_click(lambda _, run=run: run.cancel())
            self._rows.append((run, label, bar, info, cancel))
        header = w.HTML(f"<b>{len(runs)} run(s) in this kernel</b>")
        self.widget = w.VBox([header, *[w.HBox(list(row[1:])) for row in self._rows]])
        self._throttle: Throttle[None] = Throttle(1.0 / refresh_hz, lambda _: self._draw(),
                                                  name="stagewidget-runs-table")
        self._draw()
        for run in runs:
            run.subscribe(lambda status: self._throttle.submit(None, urgent=status.done()))

    def _draw(self) -> None:
        for run, label, bar, info, cancel in self._rows:
            status = run.status()
            label.value = (f"{html.escape(status.pipeline)} <code>{run.run_id[:8]}</code> "
                           f"{fmt.state_symbol(status.state)} {status.state.value}")
            bar.value = round(status.fraction, 2)
            bar.bar_style = {"succeeded": "success", "failed": "danger",
                             "cancelled": "warning"}.get(status.state.value, "")
            current = status.current_stage
            where = f"{current.name} · " if current is not None and not status.done() else ""
            info.value = html.escape(f"{where}{fmt.format_duration(status.elapsed_s)}")
            cancel.layout.display = "none" if status.done() else ""
