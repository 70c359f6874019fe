"""The run registry: named pipelines, runs started by name, their records and their cleanup.

The registry starts runs of pre-registered pipelines (clients send data, never code),
records each run in the store *before* its id is handed out, and writes every later
snapshot there from one writer thread (coalesced per run; a slow or absent store never
blocks a run). A sweep thread enforces the cap on finished runs; record expiry does
the rest. Reads come from the store, so every process sharing it sees the same runs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..engine.run import Run, on_run_start
from ..errors import PipelineError, RunNotFound, StageWidgetError
from ..pipeline import NO_INPUT
from ..status import RunStatus
from .inputs import check_input_type, input_schema, pipelines_by_name
from .store import TERMINAL, MemoryStore, Record, Store, StoreUnavailable

__all__ = ["IdempotencyConflict", "PipelineNotFound", "RunRegistry", "RunsPage", "LOST"]

_log = logging.getLogger("stagewidget.service")

LOST = "lost"  # the state the service reports for a run whose process stopped writing
STATES = ("pending", "running", "succeeded", "failed", "cancelled", LOST)
_RETRY_S = (0.05, 0.1, 0.2, 0.5, 1.0)


class PipelineNotFound(RunNotFound):
    """No pipeline is registered under the given name."""


class IdempotencyConflict(StageWidgetError, ValueError):
    """An ``Idempotency-Key`` was used again with a different request."""


class RunsPage:
    """One page of ``GET /api/runs``: the runs' JSON and the number matching in all."""

    def __init__(self, runs: list[dict[str, Any]], total: int) -> None:
        self.runs = runs
        self.total = total


def default_owner() -> str:
    """This process, as run records name it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RunRegistry:
    """Start, find, list and cancel runs; keep the store up to date.

    Args:
        pipelines: the pipelines clients may start, by name.
        store: where records live (default: a new ``MemoryStore``).
        keep_s: how long a finished run stays readable.
        max_finished: most finished runs kept; the oldest beyond it are removed.
        lost_after_s: a running run whose process wrote nothing for this long is
            reported as ``lost``.
        sweep_s: how often the sweep thread runs.
        executor: the executor of runs started by name (``"thread"``, ``"process"``, ...).
        adopt: also publish every other run this process starts (``sw.serve()`` in a
            notebook), not only those started through the registry.
        clock: wall clock (default ``time.time``).
    """

    def __init__(self, pipelines: Any = (), store: Store | None = None, *,
                 keep_s: float = 600.0, max_finished: int = 1000, lost_after_s: float = 10.0,
                 sweep_s: float = 30.0, executor: Any = None, adopt: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        for name, value in (("keep_s", keep_s), ("lost_after_s", lost_after_s),
                            ("sweep_s", sweep_s)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise PipelineError(f"{name} must be a positive number of seconds "
                                    f"(got {value!r})")
        if isinstance(max_finished, bool) or not isinstance(max_finished, int) \
                or max_finished < 0:
            raise PipelineError(f"max_finished must be a non-negative int (got {max_finished!r})")
        self.pipelines = pipelines_by_name(pipelines)
        self.store: Store = store if store is not None else MemoryStore(clock=clock)
        self.keep_s = float(keep_s)
        self.max_finished = max_finished
        self.lost_after_s = float(lost_after_s)
        self.sweep_s = float(sweep_s)
        self.executor = executor
        self.owner = default_owner()
        self._clock = clock
        # One lock for the registry's own state: the runs of this process not yet
        # recorded as finished, the writer's queue and the waiters on final records.
        self._cond = threading.Condition(threading.Lock())
        self._local: dict[str, Run] = {}
        self._pending: dict[str, RunStatus] = {}
        self._done_waiters: dict[str, list[Callable[[], None]]] = {}
        self._closed = False
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name="stagewidget-store-writer")
        self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True,
                                         name="stagewidget-store-sweep")
        self._writer.start()
        self._sweeper.start()
        self.store.on_cancel_request(self._cancel_local)
        self._unadopt = on_run_start(self.adopt) if adopt else None

    def input_schemas(self) -> dict[str, dict[str, Any] | None]:
        """Each served pipeline's input JSON schema (None: it takes no input)."""
        return {name: input_schema(pipe) for name, pipe in self.pipelines.items()}

    # -- starting runs ----------------------------------------------------------------
    def start(self, name: str, data: Any = NO_INPUT, *, idempotency_key: str | None = None,
              fingerprint: str = "") -> tuple[dict[str, Any], bool]:
        """Start pipeline ``name`` on ``data``; return (its status JSON, created).

        The run is in the store before this returns. With ``idempotency_key``, a repeat
        of the same request returns the first run (created False) instead of a new one.

        Raises:
            PipelineNotFound: no pipeline of that name.
            PipelineError: the data does not fit the pipeline's first stage.
            IdempotencyConflict: the key was used with a different request.
            StoreUnavailable: the store is down; no run was started.
        """
        pipe = self.pipelines.get(name)
        if pipe is None:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise PipelineNotFound(f"no pipeline named {name!r} (served: {known})")
        pipe._check_startable(data)
        if data is not NO_INPUT:
            check_input_type(name, pipe, data)
        run = Run.start(pipe, data, executor=self.executor, display=False, launch=False)
        record = self._record(run.status())
        self.store.put(record, keep_s=self._keep_for(record))
        if idempotency_key is not None:
            claimed = f"{run.run_id} {fingerprint}"
            earlier = self.store.claim(f"idem:{name}:{idempotency_key}", claimed, self.keep_s)
            if earlier is not None:
                self.store.remove([run.run_id])
                first_id, _, first_print = earlier.partition(" ")
                if first_print != fingerprint:
                    raise IdempotencyConflict(
                        f"Idempotency-Key {idempotency_key!r} was already used for a "
                        f"different request to pipeline {name!r}")
                return self.get(first_id), False
        self._follow(run)
        run.launch()
        return self.view(record, self._clock()), True

    def adopt(self, run: Run) -> None:
        """Publish ``run`` (started elsewhere in this process) through the store."""
        with self._cond:
            if run.run_id in self._local or self._closed:
                return
        self._follow(run)

    def _follow(self, run: Run) -> None:
        with self._cond:
            self._local[run.run_id] = run
        run.subscribe(self._observe)

    # -- reading ----------------------------------------------------------------------
    def get(self, run_id: str) -> dict[str, Any]:
        """The run's status JSON; raise ``RunNotFound`` if unknown or expired."""
        return self.view(self.record(run_id))

    def record(self, run_id: str) -> Record:
        """The run's record in the store; raise ``RunNotFound`` if unknown or expired."""
        record = self.store.get(run_id)
        if record is None:
            raise self.not_found(run_id)
        return record

    def not_found(self, run_id: str) -> RunNotFound:
        """The error for an unknown or expired run id."""
        return RunNotFound(f"no run with id {run_id!r} (finished runs are kept for "
                           f"{self.keep_s:g} s)")

    def list(self, *, state: str | None = None, pipeline: str | None = None,
             offset: int = 0, limit: int = 50) -> RunsPage:
        """Runs newest first, filtered by state and pipeline, one page of them."""
        now = self._clock()
        chosen = []
        for record in self.store.records(pipeline):
            if state is None or self._state_of(record, now) == state:
                chosen.append(record)
        chosen.sort(key=lambda r: (-r.created_at, r.run_id))
        page = [self.view(r, now) for r in chosen[offset:offset + limit]]
        return RunsPage(page, len(chosen))

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Ask the run to stop, wherever it runs; return its status JSON.

        Raises ``RunNotFound``; ``InvalidTransition`` if it has already ended.
        """
        from ..errors import InvalidTransition

        status = self.get(run_id)
        if status["state"] in TERMINAL or status["state"] == LOST:
            raise InvalidTransition(f"run {run_id} has already ended ({status['state']}); "
                                    "there is nothing to cancel")
        if not self._cancel_local(run_id):
            self.store.request_cancel(run_id)
        return status

    def when_recorded_done(self, run_id: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the run's final status is in the store (maybe now)."""
        with self._cond:
            if run_id in self._local:
                self._done_waiters.setdefault(run_id, []).append(callback)
                return
        callback()

    def local_run(self, run_id: str) -> Run | None:
        """The ``Run`` object, if this process runs it and it has not finished."""
        with self._cond:
            return self._local.get(run_id)

    def local_runs(self) -> list[Run]:
        """The runs of this process whose final status is not in the store yet."""
        with self._cond:
            return list(self._local.values())

    def stop_adopting(self) -> None:
        """Publish no further runs of this process; those followed so far still are."""
        if self._unadopt is not None:
            self._unadopt()

    def write_now(self, status: RunStatus) -> None:
        """Write ``status`` to the store from the calling thread, now (blocks).

        For the last word on a run at shutdown, after ``close()``. Raises
        ``StoreUnavailable``.
        """
        record = self._record(status)
        self.store.put(record, keep_s=self._keep_for(record))

    # -- records ----------------------------------------------------------------------
    def _record(self, status: RunStatus) -> Record:
        return Record(run_id=status.run_id, pipeline=status.pipeline, state=status.state.value,
                      created_at=status.created_at, finished_at=status.finished_at,
                      heartbeat_at=self._clock(), owner=self.owner,
                      status_json=json.dumps(status.to_dict(), separators=(",", ":")))

    def _keep_for(self, record: Record) -> float:
        # A running record outlives its last heartbeat by keep_s, so a run whose
        # process died stays readable (as lost) as long as a finished one would.
        return self.keep_s if record.terminal else self.keep_s + self.lost_after_s

    def _state_of(self, record: Record, now: float) -> str:
        if not record.terminal and now - record.heartbeat_at > self.lost_after_s:
            with self._cond:
                if record.run_id not in self._local:
                    return LOST
        return record.state

    def view(self, record: Record, now: float | None = None) -> dict[str, Any]:
        """The status JSON of ``record``, with a silent owner's run reported lost."""
        now = self._clock() if now is None else now
        data: dict[str, Any] = json.loads(record.status_json)
        if self._state_of(record, now) == LOST:
            silent_s = now - record.heartbeat_at
            data["state"] = LOST
            data["error"] = {
                "type": "stagewidget.RunLost",
                "message": f"the process running it ({record.owner}) has written nothing "
                           f"for {silent_s:.0f} s (limit {self.lost_after_s:g} s); it "
                           "probably died",
                "traceback": "", "stage": data.get("current_stage")}
        return data

    # -- writer thread ----------------------------------------------------------------
    def _observe(self, status: RunStatus) -> None:
        """Observer of every followed run (its notifier thread): queue, never block."""
        with self._cond:
            self._pending[status.run_id] = status  # a newer snapshot replaces an older one
            self._cond.notify_all()

    def _write_loop(self) -> None:
        failures = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending, {}
            for run_id, status in batch.items():
                try:
                    record = self._record(status)
                    self.store.put(record, keep_s=self._keep_for(record))
                    failures = 0
                except StoreUnavailable:
                    with self._cond:  # keep it for later unless a newer one came meanwhile
                        self._pending.setdefault(run_id, status)
                    failures += 1
                    continue
                except Exception:
                    _log.exception("could not record run %s; its next snapshot will be", run_id)
                    continue
                if record.terminal:
                    self._finished(run_id)
            if failures:
                self._stop.wait(_RETRY_S[min(failures, len(_RETRY_S)) - 1])

    def _finished(self, run_id: str) -> None:
        with self._cond:
            self._local.pop(run_id, None)
            waiters = self._done_waiters.pop(run_id, [])
        for waiter in waiters:
            try:
                waiter()
            except Exception:
                _log.exception("done-callback %r of run %s failed", waiter, run_id)

    def _cancel_local(self, run_id: str) -> bool:
        run = self.local_run(run_id)
        return run is not None and run.cancel()

    # -- sweep thread -----------------------------------------------------------------
    def sweep(self) -> int:
        """Remove the oldest finished runs beyond ``max_finished``; return how many.

        Expired records are dropped by the store itself (and from listings here).
        """
        finished = [r for r in self.store.records() if r.terminal]
        if len(finished) <= self.max_finished:
            return 0
        finished.sort(key=lambda r: (r.finished_at or r.created_at, r.run_id))
        extra = [r.run_id for r in finished[:len(finished) - self.max_finished]]
        self.store.remove(extra)
        return len(extra)

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.sweep_s):
            try:
                self.sweep()
            except StoreUnavailable:
                pass  # the next sweep will do it
            except Exception:  # the sweep must outlive any bad record
                _log.exception("the run sweep failed; it will try again in %g s", self.sweep_s)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending, stop the threads (idempotent). Runs keep running."""
        if self._unadopt is not None:
            self._unadopt()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._writer.join(timeout)
        self._stop.set()
        self._sweeper.join(timeout)
