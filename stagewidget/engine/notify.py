"""A run's observers and the queue of snapshots the process's ticker delivers to them.

The run's driver thread only queues transition snapshots (run start, stage start and
end, final) under the run's lock; the ticker (``ticker.py``, one thread for every run
of the process) delivers them in order, and between transitions samples the running
stage's progress at most ``refresh_hz`` times a second. So a slow or raising observer
never holds up the stages, and a fast loop never floods the views.

Observers must be quick (as ``concurrent.futures`` asks of done-callbacks): they share
the ticker's thread with every other run's observers. One that blocks for long does not
stall the other runs (the ticker leaves it its thread and goes on in a new one), but
its own run's later snapshots wait for it.
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
from .ticker import Ticker, ticker

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


# A queued snapshot: (snapshot, observers to call, for everyone?). Observers get the
# snapshots queued after they subscribed; "everyone" marks a transition (not the first
# snapshot of one new subscriber), which also restarts the sampling period.
_Item = tuple[RunStatus, tuple[Observer, ...], bool]


class Notifier:
    """The observer list of one run and its queue for the process's ticker.

    Args:
        cond: the run's condition; held to take a snapshot (``sample``) and by the run
            when it calls ``post``, so samples and transitions keep their order.
        sample: builds a fresh snapshot of the run; called with the run's lock held.
        name: names the run in diagnostics.
        refresh_hz: most progress deliveries per second.

    The ticker's lock (not the run's) guards the observers and the queue.
    """

    def __init__(self, cond: threading.Condition, sample: Callable[[], RunStatus],
                 name: str, refresh_hz: float) -> None:
        self.name = name
        self._cond = cond
        self._sample = sample
        self._period_s = 1.0 / refresh_hz
        self._ticker: Ticker = ticker()
        self._observers: list[Observer] = []
        self._queue: deque[_Item] = deque()
        self._sampling = False
        self._closing = False
        self._closed = threading.Event()
        self._started = False
        self._posts = 0  # transitions posted; a sample older than the latest is dropped
        # the ticker's bookkeeping, under its lock
        self.busy: threading.Thread | None = None  # the thread delivering for this run
        self.ready = False  # in the ticker's ready queue
        self.timer_key = -1  # the key of this run's live sampling timer (-1: none)
        self._just = "first"  # what was delivered last: "sample", "transition", "first"
        self._due = 0.0  # when the latest sample was due (time.monotonic())
        # only the thread delivering for this run (``busy``) touches these
        self._last_key: tuple[Any, ...] | None = None
        self._last_sent = 0.0

    def start(self) -> None:
        """Let the ticker deliver this run's snapshots (the run was launched)."""
        with self._ticker.lock:
            if self._started:
                return
            self._started = True
            self._ticker.opened()
            if self._closing and not self._queue:
                self._close()
            elif self._queue:
                self._ticker.schedule(self)

    @property
    def started(self) -> bool:
        """Whether ``start()`` was called."""
        return self._started

    # -- called with the run's lock held ---------------------------------------------
    def post(self, snapshot: RunStatus, *, sampling: bool, final: bool = False) -> None:
        """Queue a transition snapshot for every observer; say whether to sample progress.

        Call it with the run's lock held, once per transition, ``final=True`` last.
        Never blocks on observers.
        """
        ticker_ = self._ticker
        with ticker_.lock:
            self._posts += 1
            self._sampling = sampling
            self._closing = self._closing or final
            if not sampling:
                ticker_.set_due(self, None)
            if not self._observers and not self._queue and self.busy is None:
                # nobody to tell: a run without views costs the ticker nothing
                if final and self._started:
                    self._close()
                return
            self._queue.append((snapshot, tuple(self._observers), True))
            if self._started:
                ticker_.schedule(self)

    # -- called from any thread -------------------------------------------------------
    def subscribe(self, observer: Any) -> Callable[[], None]:
        """Add an observer; it first gets the current snapshot. Returns an unsubscribe.

        The observer is called on the ticker's thread (see the module docstring: it
        must be quick); subscribing to a finished run calls it once, at once, here.
        """
        fn = as_observer(observer)
        ticker_ = self._ticker
        with self._cond:  # no transition can come between the snapshot and the queue
            snapshot = self._sample()
            with ticker_.lock:
                closed = self._closed.is_set()
                if not closed:
                    self._observers.append(fn)
                    self._queue.append((snapshot, (fn,), False))
                    if self._started:
                        ticker_.schedule(self)
        if closed:
            _deliver(snapshot, (fn,))

        def unsubscribe() -> None:
            with ticker_.lock:
                if fn in self._observers:
                    self._observers.remove(fn)

        return unsubscribe

    def flush(self, timeout: float | None) -> bool:
        """Wait until the final snapshot was delivered; False at timeout.

        Called by an observer of this run (on the ticker's thread, delivering for
        it), it returns False at once: waiting for its own delivery would deadlock.
        """
        if self._ticker.is_delivering(self):
            return False
        return self._closed.wait(timeout)

    # -- the ticker's side ---------------------------------------------------------------
    def has_queue(self) -> bool:
        """Whether snapshots wait for delivery (ticker lock held)."""
        return bool(self._queue)

    def take(self, sample: bool) -> tuple[Any, ...]:
        """With the ticker's lock held: the next job (a queued item, or a sample)."""
        if sample:
            self._just = "sample"
            return (None, tuple(self._observers), self._posts)
        item = self._queue.popleft()
        self._just = "transition" if item[2] else "first"
        return item

    def deliver(self, job: tuple[Any, ...]) -> None:
        """Deliver a job from ``take`` (on a ticker thread, no lock held)."""
        snapshot, targets, third = job
        if snapshot is None:  # a progress sample
            if not targets:
                return
            with self._cond:
                if self._posts != third:
                    return  # a transition came meanwhile; it goes first
                snapshot = self._sample()
            now = time.monotonic()
            key = _progress_key(snapshot)
            if key == self._last_key and now - self._last_sent < HEARTBEAT_S:
                return  # nothing a view would redraw for
            self._last_key, self._last_sent = key, now
        elif third:  # a transition, for every observer
            self._last_key, self._last_sent = _progress_key(snapshot), time.monotonic()
        _deliver(snapshot, targets)

    def after_delivery(self, ticker_: Ticker) -> None:
        """With the ticker's lock held: schedule what comes next for this run."""
        if self._queue:
            ticker_.schedule(self)
            return
        if self._closing:
            if not self._closed.is_set():
                self._close()
            return
        if not (self._sampling and self._observers):
            return
        now = time.monotonic()
        if self._just == "sample":  # a steady rate: the next sample one period after this
            due = self._due + self._period_s
            self._due = due if due > now else now + self._period_s
        elif self._just == "transition" or self.timer_key == -1:
            self._due = now + self._period_s  # a transition was just delivered
        else:
            return  # the sampling timer runs on
        ticker_.set_due(self, self._due)

    def _close(self) -> None:
        """With the ticker's lock held: the final snapshot was handed out."""
        self._ticker.set_due(self, None)
        self._ticker.closed()
        self._closed.set()


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
