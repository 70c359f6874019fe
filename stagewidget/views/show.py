"""Choose and attach the view a run shows when it starts (``display=``).

In a Jupyter kernel with ipywidgets the widget view is displayed; anywhere else (plain
``python``, terminal IPython, CI) the text view writes to stderr. The front end is
decided here, when a run starts, never at import.

The engine never imports this module: ``register()`` (called by the facade,
``Pipeline.start``) hands it ``show`` and ``redisplay`` as the engine's display hook,
which ``Run._ipython_display_`` and ``Run.retry()`` use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine import hooks
from ..engine.logs import capture_logs
from .ipython import at_next_cell, in_widget_frontend
from .text import TextView

if TYPE_CHECKING:
    from ..engine.run import Run

# at_next_cell and in_widget_frontend live in views.ipython; named here for old imports
__all__ = ["at_next_cell", "attach", "in_widget_frontend", "redisplay", "register", "show"]


def show(run: Run) -> Any:
    """Show a new live view of ``run`` in the best way for this front end; return it."""
    if in_widget_frontend():
        from .widget import RunView  # imports ipywidgets

        capture_logs()
        widget = RunView(run, refresh_hz=run.refresh_hz)
        widget.show()
        return widget
    text = TextView()
    run.subscribe(text)
    return text


def redisplay(run: Run) -> None:
    """Show ``run`` again (a bare ``run`` ending a cell): a live widget, or its repr."""
    if in_widget_frontend():
        show(run)
    else:
        print(repr(run))


_HOOK = hooks.DisplayHook(show=show, redisplay=redisplay)


def register() -> None:
    """Make this module the engine's display hook unless one is registered (cheap).

    A hook registered before (an application embedding stagewidget in its own front
    end) is kept: the views never take the place of another front end's hook.
    """
    if hooks.display_hook() is None:
        hooks.set_display_hook(_HOOK)


def attach(run: Run, display: Any) -> None:
    """Attach what ``display`` asks for to ``run``: see ``engine.hooks.attach``.

    ``None``/``True`` show the default view, ``False`` none; any callable (or object
    with ``on_status``) is subscribed as it is.
    """
    register()
    hooks.attach(run, display)
