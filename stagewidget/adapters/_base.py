"""What every adapter shares: finding its stage, counted levels, metrics that never raise.

Library hooks run in the training thread (usually the stage's own), but some run
elsewhere (Optuna's ``n_jobs`` threads): an adapter remembers the stage it was made or
last called in and reports through that handle, which works from any thread.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Mapping
from typing import Any

from ..engine.progress import _CURRENT, StageProgress, _Loop
from ..errors import Cancelled
from ..status import Level

__all__ = ["Counter", "StageLink", "numbers_of"]


class Counter(_Loop):
    """A level of the stage's progress that a library's callbacks move (epochs, steps).

    Pushed on the stage's levels when made, in nesting order with ``track()`` loops and
    captured tqdm bars; it leaves them when closed. ``n`` is set by the adapter.
    """

    __slots__ = ("_closed", "n")

    def __init__(self, progress: StageProgress, desc: str | None, total: int | None) -> None:
        super().__init__(progress, None, total, desc)
        self.n = 0
        self._closed = False
        progress._enter(self)

    def done(self) -> int:
        """The count the adapter set last."""
        return int(self.n)

    def active(self) -> bool:
        """True until closed."""
        return not self._closed

    def stop(self) -> None:
        """Cancel: nothing to move; the adapter asks its library to stop."""
        self._stopped = True

    def close(self) -> None:
        """Leave the stage's levels (idempotent)."""
        self._closed = True

    def level(self) -> Level:
        """The level as the views draw it."""
        return Level(self.desc, int(self.n), self.total)


class StageLink:
    """An adapter's tie to its stage: progress levels, metrics, and the cancel flag.

    ``stage`` defaults to the stage running where the adapter is made; a hook called in
    another stage's context (the adapter reused by a retry) moves it there.
    """

    def __init__(self, stage: StageProgress | None = None) -> None:
        self._stage = stage if stage is not None else _CURRENT.get()
        self.stopped = False  # True once the adapter asked its library to stop for a Cancel

    def stage(self) -> StageProgress | None:
        """The stage to report to now: the caller's, else the one seen last."""
        current = _CURRENT.get()
        if current is not None:
            self._stage = current
        return self._stage

    def cancel_requested(self) -> bool:
        """True once the stage's run was asked to cancel."""
        stage = self.stage()
        return stage is not None and stage.cancelled()

    def counter(self, desc: str | None, total: Any) -> Counter | None:
        """A new level of the stage's progress; None outside a stage."""
        stage = self.stage()
        if stage is None:
            return None
        return Counter(stage, desc, _count(total))

    def report(self, metrics: Mapping[str, Any], message: str | None = None) -> None:
        """Report the numeric ``metrics`` (others are skipped); never raises ``Cancelled``.

        After a Cancel the library is being stopped cleanly: a metric lost then is
        better than an exception thrown through the library's hook.
        """
        stage = self.stage()
        if stage is None or stage.cancelled():
            return
        values = numbers_of(metrics)
        if values or message is not None:
            with contextlib.suppress(Cancelled):
                stage.report(message, **values)

    def check_cancel(self) -> None:
        """Raise ``Cancelled`` once the run was asked to cancel (libraries with no stop)."""
        stage = self.stage()
        if stage is not None and stage.cancelled():
            self.stopped = True
            raise Cancelled(f"stage {stage.name!r} was cancelled")


def numbers_of(values: Mapping[str, Any] | None) -> dict[str, float | int]:
    """The entries of ``values`` that are plain numbers or one-element arrays/tensors."""
    found: dict[str, float | int] = {}
    for name, value in (values or {}).items():
        number = _number(value)
        if number is not None:
            found[str(name)] = number
    return found


def _number(value: Any) -> float | int | None:
    if isinstance(value, (bool, str, bytes)) or value is None:
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        size = value.numel() if callable(getattr(value, "numel", None)) else \
            getattr(value, "size", 1)
        if size != 1:
            return None  # an array of several values (or none): not a metric
        item = value.item() if callable(getattr(value, "item", None)) else float(value)
    except Exception:  # numpy/JAX arrays and torch tensors of one value get here
        return None
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return None
    return item


def _count(total: Any) -> int | None:
    """A library's total as a level's total: a non-negative int, or None when unknown."""
    if total is None or isinstance(total, bool):
        return None
    try:
        value = float(total)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)
