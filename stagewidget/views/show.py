"""Choose and attach the view a run shows when it starts (``display=``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import PipelineError

if TYPE_CHECKING:
    from ..engine.run import Run

__all__ = ["attach", "default_view"]


def default_view() -> Any:
    """The best view for the current front end: a text view on stderr for now."""
    from .text import TextView

    return TextView()


def attach(run: Run, display: Any) -> None:
    """Subscribe the view ``display`` asks for to ``run``.

    ``None``/``True`` attach the default view, ``False`` none; any callable (or object
    with ``on_status``) is subscribed as it is.
    """
    if display is False:
        return
    if display is None or display is True:
        run.subscribe(default_view())
        return
    if callable(display) or callable(getattr(display, "on_status", None)):
        run.subscribe(display)
        return
    raise PipelineError(
        f"display must be None, True, False or an observer (got {display!r})"
    )
