"""The store writer: this process's unfinished runs, and the one thread that records them.

Each followed run's observer only queues its latest snapshot (coalesced per run; a slow
or absent store never blocks a run). The writer thread writes the queue to the store,
and on its own samples every unfinished run that was not written for a while
(``run.status()``: cheap, never waits for a stage), so a run's heartbeat goes on while
its observers are slow or blocked and while it waits in the queue. Writing a record
never fails for its content: a status JSON cannot hold is recorded cut down, with its
state, its error and ``result_unavailable``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..engine.run import Run
from ..status import RunState, RunStatus
from .store import Record, Store, StoreUnavailable, describe

__all__ = ["StoreWriter"]

_log = logging.getLogger("stagewidget.service")

_RETRY_S = (0.05, 0.1, 0.2, 0.5, 1.0)


class StoreWriter:
    """Follow runs of this process and keep their records in ``store`` up to date.

    Args:
        store: where records go.
        owner: this process as records name it (``host:pid``).
        keep_for: how long a record is kept after its write (by the record).
        heartbeat_s: an unfinished run is written at least about this often.
        positions: the queue positions of waiting runs (called when one is written).
        clock: wall clock for ``heartbeat_at``.
    """

    def __init__(self, store: Store, *, owner: str, keep_for: Callable[[Record], float],
                 heartbeat_s: float, positions: Callable[[], dict[str, int]],
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.owner = owner
        self.heartbeat_s = heartbeat_s
        self._keep_for = keep_for
        self._positions = positions
        self._clock = clock
        # One lock for the followed runs not yet recorded as finished, the queue of
        # snapshots to write and the waiters on final records.
        self._cond = threading.Condition(threading.Lock())
        self._local: dict[str, Run] = {}
        self._pending: dict[str, RunStatus] = {}
        # run id -> (monotonic time of its latest write, that snapshot's updated_at)
        self._written: dict[str, tuple[float, float]] = {}
        self._claims: dict[str, str] = {}  # run id -> its idempotency claim key
        self._done_waiters: dict[str, list[Callable[[], None]]] = {}
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="stagewidget-store-writer")
        self._thread.start()

    # -- following runs ---------------------------------------------------------------
    def follow(self, run: Run) -> bool:
        """Record every snapshot of ``run`` from now on; False if followed or closed."""
        with self._cond:
            if run.run_id in self._local or self._closed:
                return False
            self._local[run.run_id] = run
            self._cond.notify_all()  # the writer now wakes for its heartbeats
        run.subscribe(self.observe)
        return True

    def set_claim(self, run_id: str, key: str) -> None:
        """Have ``run_id``'s records carry its idempotency claim ``key``."""
        with self._cond:
            self._claims[run_id] = key

    def local_run(self, run_id: str) -> Run | None:
        """The followed ``Run``, if not yet recorded as finished."""
        with self._cond:
            return self._local.get(run_id)

    def local_runs(self) -> list[Run]:
        """Every followed run not yet recorded as finished."""
        with self._cond:
            return list(self._local.values())

    def when_recorded_done(self, run_id: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the run's final status is in the store (maybe now)."""
        with self._cond:
            if run_id in self._local:
                self._done_waiters.setdefault(run_id, []).append(callback)
                return
        callback()

    def observe(self, status: RunStatus) -> None:
        """Observer of every followed run (its notifier thread): queue, never block."""
        with self._cond:
            if status.run_id not in self._local:
                return  # already recorded as finished
            self._pending[status.run_id] = status  # a newer snapshot replaces an older one
            self._cond.notify_all()

    # -- records ----------------------------------------------------------------------
    def record(self, status: RunStatus, position: int | None = None,
               owner: str | None = None) -> Record:
        """The record of ``status``; never raises (a status JSON cannot hold is cut down)."""
        try:
            data = status.to_dict()
            if position:
                data["queue_position"] = position
            text = json.dumps(data, separators=(",", ":"))
        except Exception as exc:
            _log.error("run %s: its status cannot be written as JSON (%s); recording its "
                       "state without the result", status.run_id, describe(exc))
            text = json.dumps(minimal_status(status, exc), separators=(",", ":"))
        with self._cond:
            claim = self._claims.get(status.run_id, "")
        return Record(run_id=status.run_id, pipeline=status.pipeline, state=status.state.value,
                      created_at=status.created_at, finished_at=status.finished_at,
                      heartbeat_at=self._clock(), owner=owner or self.owner,
                      status_json=text, claim=claim)

    # -- the writer thread ------------------------------------------------------------
    def _loop(self) -> None:
        failures = 0
        next_heartbeat = 0.0
        half = self.heartbeat_s / 2
        while True:
            with self._cond:
                idle = not self._local  # nothing to heartbeat: sleep until a run comes

                def ready(idle: bool = idle) -> bool:
                    return bool(self._pending or self._closed or (idle and self._local))

                self._cond.wait_for(ready, None if idle else half)
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending, {}
                due: list[Run] = []
                now = time.monotonic()
                if now >= next_heartbeat:  # runs with no write for a while get one
                    next_heartbeat = now + half
                    due = [run for run_id, run in self._local.items() if run_id not in batch
                           and self._written.get(run_id, (0.0, 0.0))[0] <= now - half]
            try:
                failures = self._write(batch, due, failures)
            except Exception:  # the writer must outlive any bug in one batch
                _log.exception("the run store writer failed; it goes on")
            if failures:
                self._stop.wait(_RETRY_S[min(failures, len(_RETRY_S)) - 1])

    def _write(self, batch: dict[str, RunStatus], due: list[Run], failures: int) -> int:
        """Write ``batch`` and fresh samples of ``due`` runs; return the failure count."""
        for run in due:
            batch[run.run_id] = run.status()  # cheap: never waits for the stages
        waiting = any(s.state is RunState.PENDING for s in batch.values())
        positions = self._positions() if waiting else {}
        items = list(batch.items())
        for n, (run_id, status) in enumerate(items):
            with self._cond:
                written = self._written.get(run_id)
            if written is not None and not status.state.terminal \
                    and status.updated_at < written[1]:
                continue  # a late observer delivery, older than what was written
            pending = status.state is RunState.PENDING
            record = self.record(status, positions.get(run_id) if pending else None)
            try:
                self.store.put(record, keep_s=self._keep_for(record))
                failures = 0
            except StoreUnavailable:  # keep the rest for later (unless newer ones came)
                with self._cond:
                    for later_id, later in items[n:]:
                        if later_id in self._local:
                            self._pending.setdefault(later_id, later)
                return failures + 1
            except Exception:
                _log.exception("could not record run %s", run_id)
                if not record.terminal:
                    continue  # its next snapshot (or heartbeat) will be
                # a final one that cannot be written: let the run go all the same
            with self._cond:
                if run_id in self._local:
                    self._written[run_id] = (time.monotonic(), status.updated_at)
            if record.terminal:
                self._finished(run_id, status)
        return failures

    def _finished(self, run_id: str, status: RunStatus) -> None:
        with self._cond:
            if run_id not in self._local:
                return
        try:  # before the run is let go: whoever sees it gone sees its end logged too
            log_end(status)
        except Exception:
            _log.exception("could not log the end of run %s", run_id)
        with self._cond:
            self._local.pop(run_id, None)
            self._written.pop(run_id, None)
            self._claims.pop(run_id, None)
            waiters = self._done_waiters.pop(run_id, [])
        for waiter in waiters:
            try:
                waiter()
            except BaseException:  # one waiter must not stop the others (or the writer)
                _log.exception("done-callback %r of run %s failed", waiter, run_id)

    def close(self, timeout: float) -> list[Run]:
        """Write what is pending and stop (idempotent); return the runs still unfinished.

        Those runs are no longer followed.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._stop.set()
        with self._cond:
            if self._thread.is_alive():  # stuck on the store: leave it its runs
                return []
            left = list(self._local.values())
            self._local.clear()
        return left


def log_end(status: RunStatus) -> None:
    """One line per run end: INFO when it succeeded or was cancelled, WARNING when failed."""
    took = f"{status.elapsed_s:.2f} s"
    if status.state is RunState.FAILED:
        error = status.error
        where = f" in stage {error.stage!r}" if error is not None and error.stage else ""
        what = f": {error.type}: {error.message[:200]}" if error is not None else ""
        _log.warning("run %s of %r failed%s after %s%s", status.run_id, status.pipeline,
                     where, took, what)
    else:
        _log.info("run %s of %r %s after %s", status.run_id, status.pipeline,
                  status.state.value, took)


def minimal_status(status: RunStatus, exc: BaseException) -> dict[str, Any]:
    """A status JSON holding what can be read safely of ``status`` (never raises)."""

    def safe(read: Callable[[], Any], default: Any = None) -> Any:
        try:
            value = read()
            json.dumps(value)
            return value
        except Exception:
            return default

    def stage(s: Any) -> dict[str, Any]:
        return {"name": safe(lambda: str(s.name), "?"), "state": safe(lambda: s.state.value),
                "done": safe(lambda: int(s.done), 0), "total": safe(lambda: s.total),
                "fraction": safe(lambda: s.fraction), "eta_s": None, "metrics": {}}

    return {
        "run_id": status.run_id, "pipeline": status.pipeline, "state": status.state.value,
        "current": safe(lambda: status.current),
        "current_stage": safe(lambda: getattr(status.current_stage, "name", None)),
        "fraction": safe(lambda: float(status.fraction), 0.0),
        "created_at": safe(lambda: status.created_at, 0.0),
        "started_at": safe(lambda: status.started_at),
        "finished_at": safe(lambda: status.finished_at),
        "updated_at": safe(lambda: status.updated_at, 0.0),
        "elapsed_s": safe(lambda: status.elapsed_s, 0.0), "eta_s": None,
        "result": None, "result_is_repr": False,
        "result_unavailable": f"the status could not be written as JSON ({describe(exc)})",
        "error": safe(lambda: status.error.to_dict() if status.error is not None else None),
        "retry_of": safe(lambda: status.retry_of), "logs": [],
        "stages": [stage(s) for s in status.stages],
    }
