"""Deliver a run's snapshots to its observers from one thread, in order.

The run's driver thread only queues transition snapshots (run start, stage start and
end, final) under the run's lock; this thread delivers them, and between transitions
samples the running stage's progress at most ``refresh_hz`` times a second. So a slow
or raising observer never holds up the stages, and a fast loop never floods the views.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from ..errors import ObserverError
from ..status import RunStatus

__all__ = ["Notifier", "Observer", "call_isolated"]

_log = logging.getLogger("stagewidget")

Observer = Callable[[RunStatus], Any]

HEARTBEAT_S = 1.0  # publish at least this often while running, so elapsed/ETA move


def as_observer(observer: Any) -> Observer:
    """Accept a callable or an object with ``on_status(snapshot)``."""
    on_status = getattr(observer, "on_status", None)
    if callable(on_status):
        return cast(Observer, on_status)
    if callable(observer):
        return cast(Observer, observer)
    raise ObserverError(
        f"an observer must be callable or have on_status(snapshot) (got {observer!r})"
    )


def _progress_key(status: RunStatus) -> tuple[Any, ...]:
    """What a view would redraw for; elapsed time alone does not count."""
    return (status.state, status.current, status.logs[-1:], len(status.logs)) + tuple(
        (s.state, s.done, s.total, s.desc, s.unit, s.message, s.inner,
         tuple(s.metrics.items()))
        for s in status.stages
    )


class Notifier:
    """The observer list of one run and the thread that calls it.

    Args:
        cond: the run's condition; its lock guards everything here too.
        sample: builds a fresh snapshot of the run; called with the lock held.
        name: the thread's name.
        refresh_hz: most progress deliveries per second.
    """

    def __init__(self, cond: threading.Condition, sample: Callable[[], RunStatus],
                 name: str, refresh_hz: float) -> None:
        self._cond = cond
        self._sample = sample
        self._period_s = 1.0 / refresh_hz
        self._observers: list[Observer] = []
        # (snapshot, observers to call: those subscribed when it was queued, for everyone?)
        self._queue: deque[tuple[RunStatus, tuple[Observer, ...], bool]] = deque()
        self._sampling = False
        self._closing = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the delivery thread."""
        self._thread.start()

    # -- called with the run's lock held ---------------------------------------------
    def post(self, snapshot: RunStatus, *, sampling: bool, final: bool = False) -> None:
        """Queue a transition snapshot for every observer; say whether to sample progress."""
        self._queue.append((snapshot, tuple(self._observers), True))
        self._sampling = sampling
        self._closing = self._closing or final
        self._cond.notify_all()

    # -- called from any thread -------------------------------------------------------
    def subscribe(self, observer: Any) -> Callable[[], None]:
        """Add an observer; it first gets the current snapshot. Returns an unsubscribe."""
        fn = as_observer(observer)
        with self._cond:
            closed = self._closed
            if not closed:
                self._observers.append(fn)
                self._queue.append((self._sample(), (fn,), False))
                self._cond.notify_all()
            else:
                final = self._sample()
        if closed:
            _deliver(final, (fn,))

        def unsubscribe() -> None:
            with self._cond:
                if fn in self._observers:
                    self._observers.remove(fn)

        return unsubscribe

    def flush(self, timeout: float | None) -> bool:
        """Wait until the final snapshot was delivered; False at timeout."""
        if threading.current_thread() is self._thread:
            return False  # an observer waiting for its own delivery would deadlock
        with self._cond:
            return self._cond.wait_for(lambda: self._closed, timeout)

    @property
    def thread(self) -> threading.Thread:
        """The delivery thread (for tests and diagnostics)."""
        return self._thread

    # -- the delivery thread ----------------------------------------------------------
    def _loop(self) -> None:
        last_key: tuple[Any, ...] | None = None
        last_sent = next_sample = 0.0
        while True:
            with self._cond:
                item = self._next_item(next_sample)
                if item is None:
                    self._closed = True
                    self._cond.notify_all()
                    return
                snapshot, targets, everyone, is_sample = item
            now = time.monotonic()
            if everyone:
                key = _progress_key(snapshot)
                if is_sample and key == last_key and now - last_sent < HEARTBEAT_S:
                    next_sample = now + self._period_s
                    continue
                last_key, last_sent, next_sample = key, now, now + self._period_s
            _deliver(snapshot, targets)

    def _next_item(self, next_sample: float
                   ) -> tuple[RunStatus, tuple[Observer, ...], bool, bool] | None:
        """With the lock held: a queued item, a progress sample, or None at the end."""
        while True:
            if self._queue:
                return (*self._queue.popleft(), False)
            if self._closing:
                return None
            if not self._sampling:
                self._cond.wait()
                continue
            wait_s = next_sample - time.monotonic()
            if wait_s <= 0:
                return self._sample(), tuple(self._observers), True, True
            self._cond.wait(wait_s)


def _deliver(snapshot: RunStatus, observers: tuple[Observer, ...]) -> None:
    for observer in observers:
        call_isolated("observer", observer, snapshot, run_id=snapshot.run_id)


def call_isolated(kind: str, fn: Callable[..., Any], *args: Any, run_id: str) -> None:
    """Call user code ``fn(*args)`` for an engine thread; log what it raises, never re-raise.

    ``BaseException`` is caught too: an observer calling ``run.result()`` on a cancelled
    run raises ``Cancelled``, one calling ``sys.exit()`` raises ``SystemExit``, and
    either would otherwise end the engine's thread and every later delivery with it.
    Only a real Ctrl-C (a ``KeyboardInterrupt`` in the main thread, where signals land)
    goes on up: the user wants out. ``kind`` names ``fn`` in the log ("observer").
    """
    try:
        fn(*args)
    except KeyboardInterrupt:
        if threading.current_thread() is threading.main_thread():
            raise
        _log.exception("%s %s raised KeyboardInterrupt; run %s continues", kind,
                       _describe(fn), run_id)
    except BaseException:
        _log.exception("%s %s failed; run %s continues", kind, _describe(fn), run_id)


def _describe(fn: Any) -> str:
    """``repr(fn)`` for a log line; a raising ``__repr__`` must not hide the real error."""
    try:
        return repr(fn)
    except Exception:
        return f"<{type(fn).__qualname__} object>"
