"""Choose and attach the view a run shows when it starts (``display=``).

In a Jupyter kernel with ipywidgets the widget view is displayed; anywhere else (plain
``python``, terminal IPython, CI) the text view writes to stderr. The front end is
decided here, when a run starts, never at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ObserverError

if TYPE_CHECKING:
    from ..engine.run import Run

__all__ = ["at_next_cell", "attach", "in_widget_frontend", "show"]


def in_widget_frontend() -> bool:
    """True inside a Jupyter kernel where ipywidgets can be imported."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401  (a kernel without it gets the text view)
    except ImportError:
        return False
    return True


def show(run: Run) -> Any:
    """Show a new live view of ``run`` in the best way for this front end; return it."""
    if in_widget_frontend():
        from ..engine.logs import capture_logs
        from .widget import RunView

        capture_logs()
        widget_view = RunView(run, refresh_hz=run.refresh_hz)
        widget_view.show()
        return widget_view
    from .text import TextView

    text_view = TextView()
    run.subscribe(text_view)
    return text_view


def attach(run: Run, display: Any) -> None:
    """Attach what ``display`` asks for to ``run``.

    ``None``/``True`` show the default view, ``False`` none; any callable (or object
    with ``on_status``) is subscribed as it is.
    """
    if display is False:
        return
    if display is None or display is True:
        show(run)
        return
    if callable(display) or callable(getattr(display, "on_status", None)):
        run.subscribe(display)
        return
    raise ObserverError(
        f"display must be None, True, False or an observer (got {display!r})"
    )


def at_next_cell(callback: Any) -> None:
    """Call ``callback()`` once, on the main thread, when the next cell starts to run.

    A display update sent from a background thread between two cells carries the
    finished cell's parent, which nbclient (nbconvert, papermill) then ignores; sent
    again at the next cell's start, it is applied by display id wherever it is.
    """
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return

    def once(info: Any = None) -> None:
        shell.events.unregister("pre_run_cell", once)
        callback()

    shell.events.register("pre_run_cell", once)
