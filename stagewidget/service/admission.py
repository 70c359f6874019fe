"""Admission of runs started by name: at most ``max_running`` at once, the rest wait in order.

Each service process caps its own runs. A run beyond the cap waits, still ``pending``,
in a first-in first-out queue; when a running run ends, its done path (the run's driver
thread, right after its final transition) launches the next one, so nothing polls. A
waiting run that is cancelled leaves the queue and ends ``cancelled`` without running a
stage. Runs this process starts by other means (adopted notebook runs) are not counted.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from ..engine.run import Run

__all__ = ["RunQueue"]

_log = logging.getLogger("stagewidget.service")


class RunQueue:
    """Launch runs, at most ``max_running`` at a time; queue the others, first in first out.

    Args:
        max_running: most runs running at once (a positive int).
        on_launch_error: called as ``on_launch_error(run, exc)`` when ``run.launch()``
            raised (no thread could be started, say); the run will never start.
    """

    def __init__(self, max_running: int, *,
                 on_launch_error: Callable[[Run, Exception], None]) -> None:
        self.max_running = max_running
        self._on_launch_error = on_launch_error
        # Its own lock, not the registry's: the queue is called from run driver threads
        # (done paths) and HTTP handlers, never calls out while holding it, and is never
        # held together with the registry's lock.
        self._lock = threading.Lock()
        self._waiting: OrderedDict[str, Run] = OrderedDict()
        self._running: set[str] = set()
        self._closed = False

    def submit(self, run: Run) -> int:
        """Launch ``run`` now if a slot is free (return 0), else queue it (its position, 1..).

        Raises ``RuntimeError`` once the queue is closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the run registry is closed; no new run can start")
            if len(self._running) < self.max_running and not self._waiting:
                self._running.add(run.run_id)
                position = 0
            else:
                self._waiting[run.run_id] = run
                position = len(self._waiting)
                # under the lock: a release elsewhere cannot launch (and log) it first
                _log.info("run %s of %r queued at position %d (max_running %d)", run.run_id,
                          run.pipeline.name, position, self.max_running)
        if position == 0 and not self._launch(run):
            self._release(run.run_id)
        return position

    def positions(self) -> dict[str, int]:
        """Each waiting run's place in the queue (1: next to start)."""
        with self._lock:
            return {run_id: n for n, run_id in enumerate(self._waiting, 1)}

    def counts(self) -> tuple[int, int]:
        """(running, waiting) runs now."""
        with self._lock:
            return len(self._running), len(self._waiting)

    def cancel(self, run_id: str) -> bool:
        """If ``run_id`` waits here: take it out, cancel it and let it end; return True.

        The run is launched outside the cap only to end at once: its cancel was asked
        before its first stage, so no stage runs and it ends ``cancelled``.
        """
        with self._lock:
            run = self._waiting.pop(run_id, None)
        if run is None:
            return False
        run.cancel()
        self._launch(run, counted=False)
        return True

    def close(self) -> list[Run]:
        """Refuse new runs; cancel every waiting run (as ``cancel()``); return them."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting.values()), OrderedDict()
        for run in waiting:
            run.cancel()
            self._launch(run, counted=False)
        return waiting

    def _launch(self, run: Run, *, counted: bool = True) -> bool:
        """Launch ``run``; a counted run frees its slot when it ends. False if it failed."""
        if counted:
            run._on_done(lambda: self._release(run.run_id))
        # before launch(): a run that fails at once must not log its end before its start
        _log.info("run %s of %r started", run.run_id, run.pipeline.name)
        try:
            run.launch()
        except Exception as exc:  # e.g. "can't start new thread": report it, go on
            _log.exception("could not start run %s", run.run_id)
            try:
                self._on_launch_error(run, exc)
            except Exception:
                _log.exception("could not record that run %s failed to start", run.run_id)
            return False
        return True

    def _release(self, run_id: str) -> None:
        """Free ``run_id``'s slot and launch the next waiting runs (a run's done path)."""
        try:
            while True:
                with self._lock:
                    self._running.discard(run_id)
                    if not self._waiting or len(self._running) >= self.max_running:
                        return
                    _, run = self._waiting.popitem(last=False)
                    self._running.add(run.run_id)
                if self._launch(run):
                    return
                run_id = run.run_id  # it could not start: its slot goes to the next one
        except BaseException:  # the finishing run's driver thread must not die of this
            _log.exception("could not start the next queued run after run %s", run_id)
