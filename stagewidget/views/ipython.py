"""What the views need to know of IPython: the front end, and the next cell's start.

IPython and ipywidgets are optional: both are imported inside the functions, when a
view asks, never at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["at_next_cell", "in_widget_frontend"]


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


def at_next_cell(callback: Callable[[], Any]) -> None:
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
