"""Coalesce a stream of values into at most a given number of calls per second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Throttle"]

T = TypeVar("T")


class Throttle(Generic[T]):
    """Call ``apply`` with the latest submitted value, at most once per ``period_s``.

    ``submit`` never blocks on ``apply``'s work for long: when a call came less than
    ``period_s`` ago, the value is kept and a timer thread applies the newest one when
    the period is over. ``urgent`` values (a final state) are applied at once. Calls to
    ``apply`` never overlap.
    """

    def __init__(self, period_s: float, apply: Callable[[T], None], *,
                 clock: Callable[[], float] = time.monotonic, name: str = "stagewidget-throttle"
                 ) -> None:
        self._period_s = period_s
        self._apply = apply
        self._clock = clock
        self._name = name
        # The throttle's own lock: it orders apply() calls of one view, never the run.
        self._lock = threading.Lock()
        self._applying = threading.Lock()
        self._pending: tuple[T] | None = None
        self._timer: threading.Timer | None = None
        self._last = -float("inf")

    def submit(self, value: T, *, urgent: bool = False) -> None:
        """Offer a new value; it (or a newer one) is applied within ``period_s``.

        An ``urgent`` value (a run's final state) is applied at once, in this thread.
        """
        with self._lock:
            self._pending = (value,)
            if urgent and self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._timer is not None:
                return
            wait_s = self._last + self._period_s - self._clock()
            if wait_s > 0 and not urgent:
                self._timer = threading.Timer(wait_s, self._fire)
                self._timer.name = self._name
                self._timer.daemon = True
                self._timer.start()
                return
        self._fire()

    def flush(self) -> None:
        """Apply the pending value now, if any (e.g. before a final redraw)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._fire()

    def _fire(self) -> None:
        with self._applying:
            with self._lock:
                self._timer = None
                pending, self._pending = self._pending, None
                if pending is None:
                    return
                self._last = self._clock()
            self._apply(pending[0])
