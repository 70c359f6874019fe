"""The run registry: named pipelines, runs started by name, their records and their cleanup.

The registry starts runs of pre-registered pipelines (clients send data, never code),
records each run in the store *before* its id is handed out, admits at most
``max_running`` at once (``admission.RunQueue``) and has the store writer
(``writer.StoreWriter``) record every later snapshot and a heartbeat at least once a
second. A sweep thread enforces the cap on finished runs; record expiry does the rest.
Reads come from the store, so every process sharing it sees the same runs; an unfinished
run whose owner stopped writing reads as ``lost``, unless that owner is a live process
on this host.
"""

from __future__ import annotations

import builtins  # RunRegistry.list shadows list in its class body
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..durable.owner import default_owner, owner_alive
from ..engine.call import NO_INPUT
from ..engine.run import Run, on_run_start
from ..errors import (
    ConfigError,
    IdempotencyConflict,
    InvalidTransition,
    PipelineNotFound,
    RunNotFound,
)
from ..status import ErrorInfo, RunState, RunStatus
from .admission import RunQueue
from .inputs import check_input_given, check_input_type, input_schema, pipelines_by_name
from .store import STOPPED, TERMINAL, DamagedRecord, MemoryStore, Record, Store, StoreUnavailable
from .writer import StoreWriter

__all__ = ["IdempotencyConflict", "PipelineNotFound", "RunRegistry", "RunsPage", "LOST"]

_log = logging.getLogger("stagewidget.service")

LOST = RunState.LOST.value  # what the service reports for a run whose process stopped writing
STATES = tuple(state.value for state in RunState)  # what GET /api/runs?state= accepts
HEARTBEAT_S = 1.0  # an unfinished local run is written at least this often
_CLAIM_ATTEMPTS = 3
_RETRYABLE = frozenset({RunState.FAILED.value, RunState.CANCELLED.value})


class RunsPage:
    """One page of ``GET /api/runs``: the runs' JSON and the number matching in all."""

    def __init__(self, runs: list[dict[str, Any]], total: int) -> None:
        self.runs = runs
        self.total = total


class _Once:
    """Run ids already logged about (bounded), so a repeated read logs a run once."""

    def __init__(self, size: int = 1000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first(self, run_id: str) -> bool:
        with self._lock:
            if run_id in self._seen:
                return False
            self._seen[run_id] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True


class RunRegistry:
    """Start, find, list and cancel runs; keep the store up to date.

    Args:
        pipelines: the pipelines clients may start, by name.
        store: where records live (default: a new ``MemoryStore``).
        keep_s: how long a finished run stays readable.
        max_finished: most finished runs kept; the oldest beyond it are removed.
        lost_after_s: an unfinished run whose process wrote nothing for this long is
            reported as ``lost`` (unless that process is alive on this host).
        sweep_s: how often the sweep thread runs.
        max_running: most runs started by name that run at once in this process; the
            others wait in ``pending``, first in first out (default 32).
        executor: the executor of runs started by name (``"thread"``, ``"process"``, ...).
        adopt: also publish every other run this process starts (``sw.serve()`` in a
            notebook), not only those started through the registry. Adopted runs are
            never queued.
        clock: wall clock (default ``time.time``).
    """

    def __init__(self, pipelines: Any = (), store: Store | None = None, *,
                 keep_s: float = 600.0, max_finished: int = 1000, lost_after_s: float = 10.0,
                 sweep_s: float = 30.0, max_running: int = 32, executor: Any = None,
                 adopt: bool = False, clock: Callable[[], float] = time.time) -> None:
        for name, value in (("keep_s", keep_s), ("lost_after_s", lost_after_s),
                            ("sweep_s", sweep_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds "
                                  f"(got {value!r})")
        if isinstance(max_finished, bool) or not isinstance(max_finished, int) \
                or max_finished < 0:
            raise ConfigError(f"max_finished must be a non-negative int (got {max_finished!r})")
        if isinstance(max_running, bool) or not isinstance(max_running, int) \
                or max_running < 1:
            raise ConfigError(f"max_running must be a positive int (got {max_running!r})")
        self.pipelines = pipelines_by_name(pipelines)
        self.store: Store = store if store is not None else MemoryStore(clock=clock)
        self.keep_s = float(keep_s)
        self.max_finished = max_finished
        self.lost_after_s = float(lost_after_s)
        self.sweep_s = float(sweep_s)
        self.max_running = max_running
        # Written well within lost_after_s, so a reader never takes a live run for lost.
        self.heartbeat_s = min(HEARTBEAT_S, self.lost_after_s / 4)
        self.executor = executor
        self.owner = default_owner()
        self._host = socket.gethostname()
        self._clock = clock
        self.clock = clock  # the wall clock records are read by
        self._queue = RunQueue(max_running, on_launch_error=self._launch_failed)
        self._logged_lost = _Once()
        self._logged_damaged = _Once()
        self._writer = StoreWriter(self.store, owner=self.owner, keep_for=self._keep_for,
                                   heartbeat_s=self.heartbeat_s,
                                   positions=self._queue.positions, clock=clock)
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True,
                                         name="stagewidget-store-sweep")
        self._sweeper.start()
        # Its own lock: guards only the two maps below, is never held while calling out.
        self._retry_lock = threading.Lock()
        self._retryable: OrderedDict[str, Run] = OrderedDict()  # run id -> failed/cancelled
        self._retried: OrderedDict[str, str] = OrderedDict()  # run id -> its retry's id
        self.store.on_cancel_request(self.cancel_local)
        self._unadopt = on_run_start(self.adopt) if adopt else None

    def input_schemas(self) -> dict[str, dict[str, Any] | None]:
        """Each served pipeline's input JSON schema (None: it takes no input)."""
        return {name: input_schema(pipe) for name, pipe in self.pipelines.items()}

    # -- starting runs ----------------------------------------------------------------
    def start(self, name: str, data: Any = NO_INPUT, *, idempotency_key: str | None = None,
              fingerprint: str = "") -> tuple[dict[str, Any], bool]:
        """Start pipeline ``name`` on ``data``; return (its status JSON, created).

        The run is in the store before this returns. Beyond ``max_running`` it waits in
        ``pending`` with its ``queue_position``. With ``idempotency_key``, a repeat of the
        same request returns the first run (created False) instead of a new one, as long
        as that run is kept; once it was removed or expired, the key starts a new run.

        Raises:
            PipelineNotFound: no pipeline of that name.
            PipelineError: the data does not fit the pipeline's first stage (worded for
                an HTTP client: ``NO_INPUT`` stands for an empty request body).
            IdempotencyConflict: the key was used with a different request.
            StoreUnavailable: the store is down; no run was started.
        """
        pipe = self.pipelines.get(name)
        if pipe is None:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise PipelineNotFound(f"no pipeline named {name!r} (served: {known})")
        check_input_given(pipe, data)
        pipe._check_startable(data)
        if data is not NO_INPUT:
            check_input_type(name, pipe, data)
        run = Run.start(pipe, data, executor=self.executor, launch=False)
        record = self._writer.record(run.status())
        self.store.put(record, keep_s=self._keep_for(record))
        if idempotency_key is not None:
            try:
                first = self._claim(name, idempotency_key, run, fingerprint)
            except BaseException:
                self._forget(run.run_id)
                raise
            if first is not None:
                self._forget(run.run_id)
                return first, False
        return self._admit(run, record), True

    def _admit(self, run: Run, record: Record) -> dict[str, Any]:
        """Follow the recorded ``run`` and launch or queue it; return its status JSON."""
        try:
            if not self._writer.follow(run):
                raise RuntimeError("closed")
            self._writer.when_recorded_done(run.run_id, lambda: self._keep_retryable(run))
            position = self._queue.submit(run)
        except RuntimeError:
            self._forget(run.run_id)
            raise StoreUnavailable("the service is shutting down; no new run can "
                                   "start") from None
        status = self.view(record, self._clock())
        if position:
            status["queue_position"] = position
            self._writer.observe(run.status())  # the store gets its position soon too
        return status

    def retry(self, run_id: str) -> dict[str, Any]:
        """Start ``run.retry()`` of a failed or cancelled run of this process; return the
        new run's status JSON (recorded, then launched or queued like ``start``).

        Only the process that ran it holds its input, so only that process can retry it;
        a run is retried once (retry the retry if that fails too).

        Raises:
            RunNotFound: unknown or expired.
            InvalidTransition: the run is not failed or cancelled, another process owns
                it, it was retried already, or this process no longer holds it.
            PipelineError: the pipeline's stages changed since the run.
            StoreUnavailable: the store is down; nothing was started.
        """
        record = self.store.get(run_id)
        if record is None:
            raise self.not_found(run_id)
        state = self._state_of(record, self._clock())
        if state not in _RETRYABLE:
            raise InvalidTransition(f"run {run_id} is {state}; only a failed or cancelled "
                                    "run can be retried")
        with self._retry_lock:
            run = self._retryable.pop(run_id, None)
            again = self._retried.get(run_id)
        if run is None:
            owner = record.owner.removesuffix(STOPPED)
            if again is not None:
                why = f"run {run_id} was already retried as run {again}"
            elif owner != self.owner:
                why = (f"run {run_id} is owned by process {owner}, which alone holds its "
                       f"input; retry it there (this is process {self.owner})")
            else:
                why = (f"this process ({self.owner}) no longer holds the input of run "
                       f"{run_id} (it keeps the latest {self.max_finished} failed or "
                       "cancelled runs it ran)")
            raise InvalidTransition(why)
        try:
            new = run.retry(launch=False, display=False)
            new_record = self._writer.record(new.status())
            self.store.put(new_record, keep_s=self._keep_for(new_record))
            status = self._admit(new, new_record)
        except BaseException:
            with self._retry_lock:  # nothing started: it can be retried again
                self._retryable[run_id] = run
            raise
        with self._retry_lock:
            self._retried[run_id] = new.run_id
            while len(self._retried) > max(self.max_finished, 1):
                self._retried.popitem(last=False)
        _log.info("run %s of %r retried as run %s", run_id, run.pipeline.name, new.run_id)
        return status

    def _keep_retryable(self, run: Run) -> None:
        """Keep a failed or cancelled run of this process (its input) for ``retry``."""
        if run.status().state.value not in _RETRYABLE:
            return
        with self._retry_lock:
            self._retryable[run.run_id] = run
            while len(self._retryable) > self.max_finished:
                self._retryable.popitem(last=False)  # the oldest: its record goes first too

    def _claim(self, name: str, idempotency_key: str, run: Run, fingerprint: str
               ) -> dict[str, Any] | None:
        """Claim the key for ``run``; or return the status JSON of the run that holds it.

        A claim whose run is gone (swept, removed, expired) is released and claimed anew.
        """
        key = f"idem:{name}:{idempotency_key}"
        for _ in range(_CLAIM_ATTEMPTS):
            earlier = self.store.claim(key, f"{run.run_id} {fingerprint}",
                                       self.keep_s + self.lost_after_s)
            if earlier is None:
                self._writer.set_claim(run.run_id, key)
                return None
            first_id, _, first_print = earlier.partition(" ")
            try:
                first = self.get(first_id)
            except RunNotFound:  # its run is gone: the key is free again
                self.store.release(key, earlier)
                continue
            if first_print != fingerprint:
                raise IdempotencyConflict(
                    f"Idempotency-Key {idempotency_key!r} was already used for a "
                    f"different request to pipeline {name!r}")
            return first
        raise StoreUnavailable(f"could not claim Idempotency-Key {idempotency_key!r}: its "
                               "run keeps disappearing; try again")

    def _forget(self, run_id: str) -> None:
        """Remove a run that was recorded but will never start (a replay, an error)."""
        try:
            self.store.remove([run_id])
        except Exception:  # it expires on its own
            _log.exception("could not remove the record of unstarted run %s", run_id)

    def adopt(self, run: Run) -> None:
        """Publish ``run`` (started elsewhere in this process) through the store."""
        if self._writer.follow(run):
            self._writer.when_recorded_done(run.run_id, lambda: self._keep_retryable(run))
            _log.info("run %s of %r started (adopted)", run.run_id, run.pipeline.name)

    def _launch_failed(self, run: Run, exc: Exception) -> None:
        """A queued or new run could not be launched: record it as failed."""
        status = run.status()
        now = self._clock()
        self._writer.observe(replace(status, state=RunState.FAILED, finished_at=now,
                                     updated_at=now, error=ErrorInfo.from_exception(exc)))

    # -- reading ----------------------------------------------------------------------
    def get(self, run_id: str) -> dict[str, Any]:
        """The run's status JSON.

        Raises ``RunNotFound`` if unknown or expired, ``DamagedRecord`` if its record
        cannot be read.
        """
        record = self.store.get(run_id)
        if record is None:
            raise self.not_found(run_id)
        return self.view(record)

    def record(self, run_id: str) -> Record:
        """The run's record, checked readable; ``RunNotFound`` or ``DamagedRecord``."""
        record = self.store.get(run_id)
        if record is None:
            raise self.not_found(run_id)
        record.status_data()
        return record

    def not_found(self, run_id: str) -> RunNotFound:
        """The error for an unknown or expired run id."""
        return RunNotFound(f"no run with id {run_id!r} (finished runs are kept for "
                           f"{self.keep_s:g} s)")

    def list(self, *, state: str | None = None, pipeline: str | None = None,
             idempotency_key: str | None = None, offset: int = 0, limit: int = 50
             ) -> RunsPage:
        """Runs newest first, filtered by state, pipeline and idempotency key, one page.

        ``idempotency_key`` picks the run that key started, if it is still kept. Keys are
        per pipeline: without ``pipeline`` the key is looked up in every pipeline served
        here (one run each at most). A damaged record is skipped (and logged once), so a
        page may hold fewer than ``limit`` runs.
        """
        now = self._clock()
        if idempotency_key is not None:
            names = [pipeline] if pipeline is not None else sorted(self.pipelines)
            candidates = [record for name in names
                          for record in self._claimed_records(name, idempotency_key)]
        else:
            candidates = self.store.records(pipeline)
        chosen = [r for r in candidates if state is None or self._state_of(r, now) == state]
        chosen.sort(key=lambda r: (-r.created_at, r.run_id))
        page, damaged = [], 0
        for record in chosen[offset:offset + limit]:
            try:
                page.append(self.view(record, now))
            except DamagedRecord as exc:
                damaged += 1
                if self._logged_damaged.first(record.run_id):
                    _log.warning("skipping a damaged run record: %s", exc)
        return RunsPage(page, len(chosen) - damaged)

    def _claimed_records(self, pipeline: str, key: str) -> builtins.list[Record]:
        value = self.store.claimed(f"idem:{pipeline}:{key}")
        if value is None:
            return []
        run_id = value.partition(" ")[0]
        try:
            record = self.store.get(run_id)
        except DamagedRecord as exc:
            _log.warning("skipping a damaged run record: %s", exc)
            return []
        return [record] if record is not None and record.pipeline == pipeline else []

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Ask the run to stop, wherever it runs; return its status JSON.

        A queued run leaves the queue and ends ``cancelled`` without running a stage.
        Raises ``RunNotFound``; ``InvalidTransition`` if it has already ended.
        """
        record = self.store.get(run_id)
        if record is None:
            raise self.not_found(run_id)
        state = self._state_of(record, self._clock())
        if state in TERMINAL or state == LOST:
            raise InvalidTransition(f"run {run_id} has already ended ({state}); "
                                    "there is nothing to cancel")
        if not self.cancel_local(run_id):
            self.store.request_cancel(run_id)
        try:
            return self.view(record)
        except DamagedRecord:  # the cancel went out; answer with what the record says
            return self._summary(record, state)

    def when_recorded_done(self, run_id: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the run's final status is in the store (maybe now)."""
        self._writer.when_recorded_done(run_id, callback)

    def local_run(self, run_id: str) -> Run | None:
        """The ``Run`` object, if this process runs it and it has not finished."""
        return self._writer.local_run(run_id)

    def local_runs(self) -> builtins.list[Run]:
        """The runs of this process (queued ones too) whose final status is not stored yet."""
        return self._writer.local_runs()

    def stop_adopting(self) -> None:
        """Publish no further runs of this process; those followed so far still are."""
        if self._unadopt is not None:
            self._unadopt()

    def write_now(self, status: RunStatus) -> None:
        """Write ``status`` to the store from the calling thread, now (blocks).

        For the last word on a run at shutdown, after ``close()``. Raises
        ``StoreUnavailable``.
        """
        record = self._writer.record(status)
        self.store.put(record, keep_s=self._keep_for(record))

    # -- records ----------------------------------------------------------------------
    def _keep_for(self, record: Record) -> float:
        # An unfinished record outlives its last heartbeat by keep_s, so a run whose
        # process died stays readable (as lost) as long as a finished one would.
        return self.keep_s if record.terminal else self.keep_s + self.lost_after_s

    def state_of(self, record: Record) -> str:
        """The state the service reports for ``record`` now (``lost`` for a silent owner)."""
        return self._state_of(record, self._clock())

    def _state_of(self, record: Record, now: float) -> str:
        if not record.terminal and now - record.heartbeat_at > self.lost_after_s:
            if self._writer.local_run(record.run_id) is not None:
                return record.state
            if not owner_alive(record.owner, self._host):
                return LOST
        return record.state

    def view(self, record: Record, now: float | None = None) -> dict[str, Any]:
        """The status JSON of ``record``, with a silent owner's run reported lost.

        Raises ``DamagedRecord`` if the record's status JSON cannot be read.
        """
        now = self._clock() if now is None else now
        data = record.status_data()
        if self._state_of(record, now) == LOST:
            data["state"] = LOST
            data.pop("queue_position", None)
            data["error"] = self._lost_error(record, now, data.get("current_stage"))
        return data

    def _lost_error(self, record: Record, now: float, stage: Any) -> dict[str, Any]:
        error = record.lost_error(now - record.heartbeat_at, self.lost_after_s, stage)
        if self._logged_lost.first(record.run_id):
            _log.warning("run %s of %r is lost: %s", record.run_id, record.pipeline,
                         error["message"])
        return error

    def _summary(self, record: Record, state: str) -> dict[str, Any]:
        """A status JSON from a damaged record's own fields."""
        return {"run_id": record.run_id, "pipeline": record.pipeline, "state": state,
                "current": None, "current_stage": None, "fraction": 0.0,
                "created_at": record.created_at, "started_at": None,
                "finished_at": record.finished_at, "result": None, "result_is_repr": False,
                "error": {"type": "stagewidget.DamagedRecord",
                          "message": "the run's stored status cannot be read",
                          "traceback": "", "stage": None},
                "retry_of": None, "logs": [], "stages": []}

    def cancel_local(self, run_id: str) -> bool:
        """Cancel ``run_id`` if this process runs or queues it; say whether it did."""
        if self._queue.cancel(run_id):
            return True
        run = self.local_run(run_id)
        return run is not None and run.cancel()

    # -- sweep thread -----------------------------------------------------------------
    def sweep(self) -> int:
        """Remove the oldest finished runs beyond ``max_finished``; return how many.

        Their idempotency keys go with them. Expired records are dropped by the store
        itself (and from listings here).
        """
        finished = [r for r in self.store.records() if r.terminal]
        if len(finished) <= self.max_finished:
            return 0
        finished.sort(key=lambda r: (r.finished_at or r.created_at, r.run_id))
        extra = [r.run_id for r in finished[:len(finished) - self.max_finished]]
        self.store.remove(extra)
        with self._retry_lock:
            for run_id in extra:
                self._retryable.pop(run_id, None)
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
        """Write what is pending, stop the threads (idempotent). Runs keep running.

        Runs still waiting in the queue are cancelled (they never started). A run still
        running is let go: its record names its owner as having stopped serving it, so
        other processes report it lost once it goes silent.
        """
        if self._unadopt is not None:
            self._unadopt()
        deadline = time.monotonic() + timeout
        for run in self._queue.close():
            run.wait(max(deadline - time.monotonic(), 0.0))
            self._writer.observe(run.status())
        abandoned = self._writer.close(max(deadline - time.monotonic(), 0.1))
        self._stop.set()
        self._sweeper.join(max(deadline - time.monotonic(), 0.1))
        for run in abandoned:
            try:
                record = self._writer.record(run.status(), owner=self.owner + STOPPED)
                self.store.put(record, keep_s=self._keep_for(record))
            except Exception:  # best effort: it turns lost when its heartbeat stops anyway
                _log.debug("could not mark run %s as let go", run.run_id, exc_info=True)

