"""One delivery thread for every run of the process: the ticker.

Each run's ``Notifier`` (``notify.py``) holds its observers and a queue of transition
snapshots; the ticker's thread delivers them, in order for each run, and samples the
progress of every running run at that run's own ``refresh_hz`` (like rich's single
refresh thread for all tasks of a display). It is the only rate limiter between
``sw.track`` and a view. It starts with the first delivery (never at import) and ends
once nothing is left to deliver.

Observers must be quick. Still, one slow observer must not stall everybody: a
watchdog thread notices a delivery running longer than ``STALL_S``, leaves that thread
to finish it, and hands the ticking to a fresh thread. The stuck run's later
deliveries wait for the stuck one (its order is kept); other runs go on at once. So
the process has one ticker thread, one watchdog (only while two or more runs are
active: with one, there is nobody else to hold up), and one thread per stuck observer.

Locking: the ticker's own lock guards every notifier's observers and queue. A run
posts with its lock held and then takes the ticker's (run, then ticker); the ticker
never takes a run's lock while holding its own, so the two cannot deadlock.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .notify import Notifier

__all__ = ["STALL_S", "Ticker", "ticker"]

STALL_S = 0.1  # a delivery running longer than this no longer holds up the other runs
LINGER_S = 1.0  # an idle ticker thread waits this long for new work before it ends


class _Worker:
    """A ticker thread and the start time of the delivery it is in (None: not in one)."""

    __slots__ = ("since", "thread")

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.since: float | None = None


class Ticker:
    """Deliver every run's snapshots from one thread (see the module docstring).

    Notifiers call ``schedule`` and ``set_due`` with ``lock`` held; everything else
    runs on the ticker's own threads.
    """

    def __init__(self, *, stall_s: float = STALL_S) -> None:
        self.lock = threading.Lock()
        self._work = threading.Condition(self.lock)  # the current ticker thread waits here
        self._watch = threading.Condition(self.lock)  # the watchdog waits here
        self._stall_s = stall_s
        self._ready: deque[Notifier] = deque()  # notifiers with queued snapshots
        self._timers: list[tuple[float, int, Notifier]] = []  # (due, key, notifier) heap
        self._keys = itertools.count()
        self._active = 0  # notifiers started and not closed yet
        self._current: _Worker | None = None
        self._watcher: threading.Thread | None = None
        self._spawned = 0

    # -- called by notifiers with self.lock held ------------------------------------------
    def schedule(self, notifier: Notifier) -> None:
        """Deliver ``notifier``'s queue soon (unless a thread is delivering for it)."""
        if notifier.busy is None and not notifier.ready:
            notifier.ready = True
            self._ready.append(notifier)
            self._wake()

    def set_due(self, notifier: Notifier, due: float | None) -> None:
        """Sample ``notifier``'s run at ``due`` (``time.monotonic()``); None: stop."""
        if due is None:
            notifier.timer_key = -1
            return
        key = next(self._keys)
        notifier.timer_key = key
        heapq.heappush(self._timers, (due, key, notifier))
        if self._timers[0][1] == key:  # the new earliest: the thread may be asleep past it
            self._wake()

    def opened(self) -> None:
        """A notifier started."""
        self._active += 1
        if self._current is not None:
            self._guard_if_needed()

    def closed(self) -> None:
        """A notifier delivered its final snapshot."""
        self._active -= 1

    def is_delivering(self, notifier: Notifier) -> bool:
        """Whether the calling thread is delivering one of ``notifier``'s snapshots."""
        return notifier.busy is threading.current_thread()

    # -- threads ----------------------------------------------------------------------
    def _wake(self) -> None:
        if self._current is None:
            self._spawn()
        else:
            self._work.notify()

    def _spawn(self) -> None:
        """Start a ticker thread (and the watchdog if it is not running); lock held."""
        self._spawned += 1
        name = "stagewidget-ticker" if self._spawned == 1 else \
            f"stagewidget-ticker-{self._spawned}"
        worker = _Worker(threading.Thread(name=name, daemon=True))
        worker.thread.run = lambda: self._tick(worker)  # type: ignore[method-assign]
        self._current = worker
        worker.thread.start()
        self._guard_if_needed()

    def _guard_if_needed(self) -> None:
        """Start the watchdog when a stall could hold up another run; lock held.

        With one run, a stuck observer can only hold up its own run's deliveries, which
        wait for it anyway: no watchdog, no wake-ups (a view costs one thread's ticks).
        """
        if self._watcher is None and self._active >= 2:
            self._watcher = threading.Thread(target=self._guard,
                                             name="stagewidget-ticker-watchdog", daemon=True)
            self._watcher.start()

    def _tick(self, me: _Worker) -> None:
        """The ticker thread: deliver what is due, in order per run, until idle.

        One locked section per delivery (the lock is let go only around the observers):
        under a busy stage each wake-up and each line here costs GIL hand-offs.
        """
        lock = self.lock
        idle_since: float | None = None
        with lock:
            while True:
                now = time.monotonic()
                job = self._pick(now)
                if job is None:
                    # (a live sampling timer keeps it: _pick dropped the stale ones)
                    if not self._timers and (self._active == 0 or (
                            idle_since is not None and now - idle_since >= LINGER_S)):
                        self._current = None
                        self._watch.notify()
                        return
                    idle_since = idle_since or now
                    wait_s = LINGER_S if not self._timers else \
                        min(self._timers[0][0] - now, LINGER_S)
                    self._work.wait(max(wait_s, 0.0))
                    continue
                idle_since = None
                notifier, sample = job
                notifier.busy = me.thread
                me.since = now
                work = notifier.take(sample)
                lock.release()
                try:
                    notifier.deliver(work)  # user code: no lock held
                finally:
                    lock.acquire()
                me.since = None
                notifier.busy = None
                notifier.after_delivery(self)
                if self._current is not me:  # replaced while stuck: the new one goes on
                    return

    def _pick(self, now: float) -> tuple[Notifier, bool] | None:
        """With the lock held: (a notifier, whether to sample it) that is due, or None."""
        while self._ready:
            notifier = self._ready.popleft()
            notifier.ready = False
            if notifier.busy is None and notifier.has_queue():
                return notifier, False
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, key, notifier = heapq.heappop(timers)
            if key != notifier.timer_key:
                continue  # rescheduled or stopped since
            notifier.timer_key = -1
            if notifier.busy is None:
                return notifier, True
        while timers and timers[0][1] != timers[0][2].timer_key:
            heapq.heappop(timers)  # stale: do not wake up for them
        return None

    def _guard(self) -> None:
        """The watchdog: hand the ticking to a new thread when a delivery stalls."""
        with self.lock:
            while self._current is not None and self._active >= 2:
                worker = self._current
                since = worker.since
                now = time.monotonic()
                if since is not None and now - since >= self._stall_s:
                    # leave the stuck thread to its observer; it ends when that returns
                    self._current = None
                    self._spawn()
                    continue
                wait_s = self._stall_s if since is None else since + self._stall_s - now
                self._watch.wait(max(wait_s, self._stall_s / 4))
            self._watcher = None


# The one process-wide ticker (process-wide by nature, like the threads it runs).
_ticker: Ticker | None = None
_ticker_lock = threading.Lock()
_fork_hooked = False


def ticker() -> Ticker:
    """The process's ticker, created at first use (its threads start with its first work)."""
    global _ticker, _fork_hooked
    if _ticker is None:
        with _ticker_lock:
            if _ticker is None:
                _ticker = Ticker()
                if not _fork_hooked and hasattr(os, "register_at_fork"):
                    # a forked child has none of our threads: it starts afresh
                    os.register_at_fork(after_in_child=_forget)
                    _fork_hooked = True
    return _ticker


def _forget() -> None:
    global _ticker, _ticker_lock
    _ticker, _ticker_lock = None, threading.Lock()
