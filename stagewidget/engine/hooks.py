"""The display hook: how the engine shows a run without importing the views.

The engine sits below the views, so it never imports them. Where it must show a run
itself (a bare ``run`` at the end of a notebook cell, the run that ``retry()`` starts),
it asks the hook the views layer registered here (dependency inversion). The public
facade (``Pipeline.start``) registers it on first use; until then no view is shown,
and a run only gets the observers it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ObserverError

if TYPE_CHECKING:
    from .run import Run

__all__ = ["DisplayHook", "attach", "display_hook", "set_display_hook"]


@dataclass(frozen=True, slots=True)
class DisplayHook:
    """What the views layer does for the engine.

    Args:
        show: attach the best live view of this front end to a run (``display=None``).
        redisplay: show a run once more (``Run._ipython_display_``).
    """

    show: Callable[[Run], Any]
    redisplay: Callable[[Run], None]


# The one registered hook: set by the views layer, read by the engine. A process has
# one front end, so one hook; replacing it is atomic (a plain attribute assignment).
_hook: list[DisplayHook] = []


def set_display_hook(hook: DisplayHook | None) -> None:
    """Register ``hook`` (replacing any earlier one; None: none); the views layer calls it."""
    _hook[:] = [] if hook is None else [hook]


def display_hook() -> DisplayHook | None:
    """The registered hook, or None before the views layer was first used."""
    return _hook[0] if _hook else None


def attach(run: Run, display: Any) -> None:
    """Attach what ``display`` asks for to ``run`` (before it is launched).

    ``None``/``True`` show the default view through the display hook (none when no
    hook is registered), ``False`` none; any callable (or object with ``on_status``) is
    subscribed as it is.

    Raises:
        ObserverError: ``display`` is none of these.
    """
    if display is False:
        return
    if display is None or display is True:
        hook = display_hook()
        if hook is not None:
            hook.show(run)
        return
    if callable(display) or callable(getattr(display, "on_status", None)):
        run.subscribe(display)
        return
    raise ObserverError(
        f"display must be None, True, False or an observer (got {display!r})"
    )
