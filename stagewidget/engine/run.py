"""Run: one execution of a pipeline, its lock, its state machine and its observers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..durable import history
from ..durable.cache import CacheKey, StageCache
from ..durable.eta import expected_durations
from ..durable.fingerprint import stage_fingerprint
from ..errors import (
    AlreadyStarted,
    Cancelled,
    InvalidTransition,
    PipelineError,
    _RunOptionError,
)
from ..status import (
    ErrorInfo,
    Outcome,
    RunState,
    RunStatus,
    StageState,
    StageStatus,
    check_run_transition,
    check_stage_transition,
)
from . import hooks, libprogress, shutdown
from . import output as stage_output
from .call import NO_INPUT
from .executors import Executor, LoopOwner, StageContext, resolve_executor
from .gil import require_gil
from .logs import LOG_LINES, RunLog
from .notify import Notifier, call_isolated
from .progress import _CURRENT, StageProgress

if TYPE_CHECKING:
    from .definition import PipelineDefinition as Pipeline
    from .definition import Stage

__all__ = ["Run", "on_run_start", "recent_runs"]

_log = logging.getLogger("stagewidget")

RECENT_RUNS = 100
KEPT_RUNS = 5
# The process's latest runs, for sw.runs(): a kernel's runs are process-wide by nature.
# The last 5 are held (a notebook's "the run I just started" outlives its cell); the
# last 100 only weakly, so an old run nobody else holds is freed with its result.
# deque.append is atomic, so starting runs from several threads needs no lock.
_kept: deque[Run] = deque(maxlen=KEPT_RUNS)
_recent: deque[weakref.ref[Run]] = deque(maxlen=RECENT_RUNS)


def recent_runs() -> list[Run]:
    """The runs this process started most recently and still alive (at most 100), oldest
    first: the last 5 always, older ones while something else holds them."""
    runs = (ref() for ref in tuple(_recent))
    return [run for run in runs if run is not None]


# Who wants to hear of every new run of this process (a status service serving a
# notebook's runs). list.append/remove and iterating over a copy need no lock.
_start_listeners: list[Callable[[Run], None]] = []


def on_run_start(listener: Callable[[Run], None]) -> Callable[[], None]:
    """Call ``listener(run)`` (in the starting thread) for every run started from now on.

    Returns a function that stops it. A raising listener is logged (whatever it raises,
    ``BaseException`` included); the run goes on.
    """
    _start_listeners.append(listener)

    def remove() -> None:
        if listener in _start_listeners:
            _start_listeners.remove(listener)

    return remove

_SKIP: Mapping[StageState, StageState] = {StageState.PENDING: StageState.SKIPPED}
_SETTLE_S = 0.5  # a new run waits this long at most for the last runs' history writes
_DELIVERY_GRACE_S = 5.0  # wait() lets observers this long to receive the final status


class Run:
    """One execution of a pipeline. Create it with ``Pipeline.start()``.

    All methods may be called from any thread. One lock guards the run's state; the
    stages run in the driver thread (or the caller's, inline) and observers are called
    from the process's ticker thread with immutable ``RunStatus`` snapshots.
    """

    def __init__(self, pipeline: Pipeline, stages: tuple[Stage, ...], data: Any, *,
                 executor: Executor, refresh_hz: float, clock: Callable[[], float],
                 start_index: int = 0, done_stages: tuple[StageStatus, ...] = (),
                 retry_of: str | None = None) -> None:
        if not isinstance(refresh_hz, (int, float)) or not refresh_hz > 0:
            raise _RunOptionError(f"refresh_hz must be a positive number (got {refresh_hz!r})")
        self.run_id = str(uuid.uuid4())
        self.pipeline = pipeline
        self.refresh_hz = float(refresh_hz)
        self._stages = stages
        self._executor = executor
        self._stage_executors = tuple(
            resolve_executor(s.executor, what=f"stage {s.name!r} executor")
            if s.executor is not None else executor
            for s in stages
        )
        # each stage's output cache (None: uncached), resolved now so a bad setting
        # fails the start, not the run
        cache_for = getattr(pipeline, "cache_for", None)
        self._caches: tuple[StageCache | None, ...] = tuple(
            cache_for(s) if cache_for is not None else None for s in stages)
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        # The live result and exception; snapshots reach them through this box, which
        # is emptied when the Run is collected (so kept snapshots do not pin them).
        self._outcome = Outcome()
        # not at exit: a status service's last writes (atexit) still read the result
        weakref.finalize(self, self._outcome.release).atexit = False
        # The run history: where this run is recorded (None: not recorded), the stages'
        # code fingerprints and, from earlier runs with the same code, their durations.
        self._history = history.open_history(pipeline)
        self._fingerprints = tuple(stage_fingerprint(s.fn, values=False) for s in stages) \
            if self._history is not None else ()
        self._recorder = history.RunRecorder(self._history, self._fingerprints) \
            if self._history is not None else None
        expected: tuple[float | None, ...] = (None,) * len(stages)
        if self._history is not None:
            history.flush(_SETTLE_S, finished_only=True)  # a run that just ended counts
            expected = expected_durations(self._history, pipeline.name,
                                          [s.name for s in stages], self._fingerprints)
        now = clock()
        statuses = done_stages + tuple(
            StageStatus(name=s.name, total=s.total, expected_s=e)
            for s, e in zip(stages[start_index:], expected[start_index:], strict=True)
        )
        self._status = RunStatus(run_id=self.run_id, pipeline=pipeline.name, stages=statuses,
                                 created_at=now, updated_at=now, retry_of=retry_of,
                                 outcome=self._outcome)
        self._start_index = start_index
        self._input = data  # the input of the stage at self._input_index, kept for retry()
        self._input_index = start_index
        # The running stage's live parts (not status): set when it starts, dropped by
        # _move_to when it ends. cancel() reaches the stage through them.
        self._progress: StageProgress | None = None
        self._context: StageContext | None = None
        self._stage_executor: Executor | None = None
        self._cancel_requested = False
        self._done_callbacks: list[Callable[[], None]] = []
        # Released once the run has ended. _join() waits on it with a timed acquire, a
        # C call: Ctrl-C there cannot leave the run's Condition half-released, as a
        # KeyboardInterrupt landing inside Condition.wait's Python code can.
        self._ended = threading.Lock()
        self._ended.acquire()
        self._loops = LoopOwner()
        self._logs = RunLog(LOG_LINES)
        short = self.run_id[:8]
        self._notifier = Notifier(self._cond, _weak_sampler(self),
                                  f"stagewidget-notify-{short}", refresh_hz)
        self._thread: threading.Thread | None = None
        if executor.background:
            self._thread = threading.Thread(target=_drive_thread, args=(self,),
                                            name=f"stagewidget-run-{short}", daemon=True)

    @classmethod
    def start(cls, pipeline: Pipeline, data: Any, *, executor: Any = None,
              observers: Iterable[Any] = (), refresh_hz: float = 10.0,
              clock: Callable[[], float] | None = None,
              stages: tuple[Stage, ...] | None = None, launch: bool = True,
              **more: Any) -> Run:
        """Create a run of ``pipeline`` (or of ``stages``), subscribe ``observers``, start it.

        The run shows no view of its own: ``Pipeline.start`` (the facade) chooses the
        views. With ``launch=False`` the run is only prepared: the caller records it
        somewhere or attaches views first (the status service and the facade do), then
        calls ``launch()``.
        """
        run = cls(pipeline, pipeline.stages if stages is None else stages, data,
                  executor=resolve_executor(executor), refresh_hz=refresh_hz,
                  clock=clock or time.time, **more)
        for observer in observers:
            run.subscribe(observer)
        if launch:
            run.launch()
        return run

    def launch(self) -> None:
        """Start a run prepared with ``Run.start(..., launch=False)``; call it once.

        Raises:
            AlreadyStarted: the run was launched before.
            UnsupportedInterpreter: this Python runs without the GIL (free-threaded).
        """
        require_gil()
        if self._notifier.started:
            raise AlreadyStarted(f"run {self.run_id} was already launched")
        if self._recorder is not None:  # recorded once launched, from the caller's thread
            _record(self, self._recorder)
        _kept.append(self)
        _recent.append(weakref.ref(self))
        for listener in tuple(_start_listeners):
            call_isolated("run-start listener", listener, self, run_id=self.run_id)
        self._notifier.start()
        if self._thread is not None:
            shutdown.watch(self)  # the end of the program waits for it (bounded)
            self._thread.start()
        else:
            self._drive()

    # -- public API -------------------------------------------------------------------
    def __repr__(self) -> str:
        status = self.status()
        return (f"<Run {self.run_id[:8]} of {status.pipeline!r}: {status.state.value}, "
                f"{status.fraction:.0%}>")

    def _ipython_display_(self) -> None:
        """A bare ``run`` at the end of a notebook cell shows another live view of it.

        The views layer decides how (through the display hook); without one, the repr.
        """
        hook = hooks.display_hook()
        if hook is not None:
            hook.redisplay(self)
        else:
            print(repr(self))

    @property
    def executor(self) -> Executor:
        """The run's executor."""
        return self._executor

    def status(self) -> RunStatus:
        """Return a fresh immutable snapshot (cheap; never blocks on the stages)."""
        with self._cond:
            return self._snapshot_locked()

    def done(self) -> bool:
        """True once the run succeeded, failed or was cancelled."""
        with self._cond:
            return self._status.state.terminal

    def wait(self, timeout: float | None = None) -> RunStatus:
        """Block until the run ends (or ``timeout`` seconds pass); return its status.

        Once the run has ended, this also waits (briefly) until observers have been
        handed the final status, so a script's text view prints its summary.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            finished = self._cond.wait_for(lambda: self._status.state.terminal, timeout)
        if finished:
            left = _DELIVERY_GRACE_S
            if deadline is not None:
                left = min(left, max(deadline - time.monotonic(), 0.0))
            self._notifier.flush(left)
        return self.status()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run and return the last stage's output.

        Raises:
            TimeoutError: the run did not end within ``timeout``.
            Cancelled: the run was cancelled.
            Exception: the failed stage's own exception, re-raised.
        """
        status = self.wait(timeout)
        if status.state is RunState.SUCCEEDED:
            return status.outcome.result
        raise self._exception_of(status, timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the run; return the failed stage's exception (None if it succeeded).

        A cancelled run gives a ``Cancelled`` instance. Raises ``TimeoutError``.
        """
        status = self.wait(timeout)
        if status.state is RunState.SUCCEEDED:
            return None
        return self._exception_of(status, timeout)

    def cancel(self) -> bool:
        """Ask the run to stop; return False if it had already ended.

        Cooperative: the running stage's next ``track``/``advance``/``report`` raises
        ``Cancelled``; at the latest no further stage starts. Async stages are
        cancelled through their task.
        """
        with self._cond:
            if self._status.state.terminal:
                return False
            self._cancel_requested = True
            progress, context = self._progress, self._context
            stage_executor = self._stage_executor
        if progress is not None:
            progress.request_cancel()
        if context is not None and stage_executor is not None:
            stage_executor.cancel(context)
        return True

    def subscribe(self, observer: Any) -> Callable[[], None]:
        """Call ``observer(snapshot)`` on every change; return a function that unsubscribes.

        The observer (a callable, or an object with ``on_status``) is called from the
        process's ticker thread, never with the lock held, first with the current status.
        Subscribing to a finished run calls it once, at once, with the final status.
        Observers must be quick: they share that thread with every run's observers (one
        blocking for long is left its own thread, but its run's later snapshots wait).
        """
        return self._notifier.subscribe(observer)

    def retry(self, *, launch: bool = True, **options: Any) -> Run:
        """Start a new run from the failed or cancelled stage, with the input it had.

        Stages that succeeded are not run again. The pipeline's current definition of
        each stage is used, so a stage fixed and re-defined in a notebook takes effect.
        Options are those of ``Pipeline.start()``; ``display=None`` shows the new run
        the way the views layer shows a new run (through the display hook). With
        ``launch=False`` the new run is only prepared (as ``Run.start``): the caller
        launches it (the status service queues it first).
        """
        with self._cond:
            state = self._status.state
            if state not in (RunState.FAILED, RunState.CANCELLED):
                raise InvalidTransition(
                    f"run {self.run_id} is {state.value}; only a failed or cancelled run "
                    "can be retried"
                )
            index, data = self._input_index, self._input
            done = self._status.stages[:index]
        names = [s.name for s in self._stages]
        if [s.name for s in self.pipeline.stages] == names:
            stages = self.pipeline.stages
        else:
            raise PipelineError(
                f"pipeline {self.pipeline.name!r} now has stages "
                f"{[s.name for s in self.pipeline.stages]}, not {names}; start a new run"
            )
        options.setdefault("executor", self._executor)
        display = options.pop("display", None)
        run = Run.start(self.pipeline, data, stages=stages, start_index=index,
                        done_stages=done, retry_of=self.run_id, launch=False, **options)
        hooks.attach(run, display)
        if launch:
            run.launch()
        return run

    def __await__(self) -> Generator[Any, None, Any]:
        """``await run``: like ``result()``, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle() -> None:
            if not future.done():
                future.set_result(None)

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # the loop has closed; nobody awaits any more
                pass

        self._on_done(wake)
        yield from future.__await__()
        return self.result()

    def _join(self) -> Any:
        """Wait and return the result; Ctrl-C cancels the run, then re-raises."""
        try:
            self._wait_ended()
        except KeyboardInterrupt:
            self.cancel()
            self._wait_ended()  # a second Ctrl-C stops waiting for the stage to notice
            raise
        return self.result()

    def _wait_ended(self, deadline: float | None = None) -> bool:
        """Wait (Ctrl-C can interrupt it) until the run ends or ``time.monotonic()``
        passes ``deadline``; say whether it ended."""
        while not self.done():
            wait_s = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait_s <= 0:
                return False
            if self._ended.acquire(timeout=wait_s):
                self._ended.release()
        return True

    # -- internals ----------------------------------------------------------------------
    def _exception_of(self, status: RunStatus, timeout: float | None) -> BaseException:
        if not status.state.terminal:
            return TimeoutError(f"run {self.run_id} still {status.state.value} after {timeout} s")
        if status.error is not None and status.error.outcome.exception is not None:
            return status.error.outcome.exception
        stage = status.current_stage
        where = f" in stage {stage.name!r}" if stage is not None else ""
        return Cancelled(f"run {self.run_id} of {status.pipeline!r} was cancelled{where}")

    def _executor_for(self, index: int | None) -> Executor:
        if index is None:
            return self._executor
        return self._stage_executors[index - self._start_index]

    def _on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the run has ended (at once if it has; isolated)."""
        with self._cond:
            if not self._status.state.terminal:
                self._done_callbacks.append(callback)
                return
        call_isolated("done-callback", callback, run_id=self.run_id)

    def _snapshot_locked(self) -> RunStatus:
        """A fresh snapshot: the recorded state plus the live progress of the stage."""
        now = self._clock()
        status = self._status
        if status.state is not RunState.RUNNING:
            return status
        stages = status.stages
        index, progress = status.current, self._progress
        if index is not None and progress is not None and stages[index].state is StageState.RUNNING:
            stages = stages[:index] + (self._stage_now(stages[index], progress, now),) + \
                stages[index + 1:]
        logs, logs_total, logs_open = self._logs.snapshot()
        return replace(status, stages=stages, updated_at=now, logs=logs, logs_total=logs_total,
                       logs_open=logs_open, elapsed_s=max(now - (status.started_at or now), 0.0))

    @staticmethod
    def _stage_now(stage: StageStatus, progress: StageProgress, now: float,
                   state: StageState | None = None) -> StageStatus:
        done, total, desc, unit, inner = progress.sample()
        return replace(
            stage, state=state or stage.state, done=done, total=total, desc=desc, unit=unit,
            inner=inner,
            metrics=progress.metrics(), history=progress.history(), message=progress.message,
            elapsed_s=max(now - (stage.started_at or now), 0.0),
            finished_at=now if state is not None else stage.finished_at,
        )

    def _move_to(self, state: RunState | None = None, *,
                 stages: Mapping[int, StageState] | None = None,
                 others: Mapping[StageState, StageState] | None = None,
                 **changes: Any) -> None:
        """Make one checked change of the run and its stages; queue its snapshot.

        The only place the run's status changes. ``stages`` moves the stages at those
        indexes; ``others`` moves every other unfinished stage by its state (``{PENDING:
        SKIPPED}``). Every move is checked against the transition table before anything
        is written, so an observer never sees a half-made change; ``result=`` goes into
        the run's ``Outcome`` box, and ``error=`` (an ``ErrorInfo``) has its exception
        moved there, in the same snapshot as the stage's FAILED. A stage leaving RUNNING
        takes its final progress and drops its live progress handle. Done-callbacks run
        after the lock is released, each isolated.

        Raises:
            InvalidTransition: a move the table does not allow (nothing was changed).
        """
        with self._cond:
            now = self._clock()
            status = self._status
            moves = dict(stages or {})
            if others:
                moves.update((i, others[s.state]) for i, s in enumerate(status.stages)
                             if i not in moves and s.state in others)
            new_stages = list(status.stages)
            for index, stage_state in moves.items():
                new_stages[index] = self._stage_moved_locked(new_stages[index], stage_state, now)
            error = changes.get("error")
            if any(s is StageState.FAILED for s in moves.values()) and error is None:
                raise InvalidTransition("a stage cannot fail without an error")
            if state is not None:
                check_run_transition(status.state, state)
                changes["state"] = state
                if state is RunState.RUNNING:
                    changes["started_at"] = now
                if state.terminal:
                    changes["finished_at"] = now
                    changes["elapsed_s"] = max(now - (status.started_at or now), 0.0)
            if "result" in changes:
                self._outcome.result = changes.pop("result")
            if error is not None:
                self._outcome.exception = error.exception
                changes["error"] = replace(error, outcome=self._outcome)
            if moves:
                changes["stages"] = tuple(new_stages)
            if any(status.stages[i].state is StageState.RUNNING for i in moves):
                self._progress = self._context = self._stage_executor = None
            logs, logs_total, logs_open = self._logs.snapshot()
            self._status = replace(status, updated_at=now, logs=logs, logs_total=logs_total,
                                   logs_open=logs_open, **changes)
            final = self._status.state.terminal
            sampling = self._status.state is RunState.RUNNING and any(
                s.state is StageState.RUNNING for s in self._status.stages)
            self._notifier.post(self._snapshot_locked(), sampling=sampling, final=final)
            self._cond.notify_all()
            callbacks: list[Callable[[], None]] = []
            if final:
                callbacks, self._done_callbacks = self._done_callbacks, []
                self._ended.release()
        for callback in callbacks:  # each isolated: one raising must not stop the others
            call_isolated("done-callback", callback, run_id=self.run_id)

    def _stage_moved_locked(self, old: StageStatus, state: StageState,
                            now: float) -> StageStatus:
        """``old`` moved to ``state`` (checked), with its times and final progress."""
        check_stage_transition(old.name, old.state, state)
        if state is StageState.RUNNING:
            return replace(old, state=state, started_at=now)
        if old.state is StageState.RUNNING and self._progress is not None:
            return self._stage_now(old, self._progress, now, state)
        return replace(old, state=state, finished_at=now)

    def _drive(self) -> None:
        """Run the stages in order. Runs on the driver thread (or inline in the caller)."""
        interrupted: BaseException | None = None
        try:
            self._move_to(RunState.RUNNING)
            data = self._input
            for index in range(self._start_index, len(self._stages)):
                if self._cancel_asked():  # before the stage starts: it never runs
                    self._move_to(RunState.CANCELLED, current=index,
                                  stages={index: StageState.CANCELLED}, others=_SKIP)
                    return
                outcome, data = self._run_stage(index, data)
                if not outcome.succeeded:  # succeeded, or its output came from the cache
                    if outcome is StageState.CANCELLED and isinstance(data, KeyboardInterrupt):
                        interrupted = data
                    _unpin(data)
                    data = None  # the exception lives on in the run's Outcome
                    self._move_to(RunState.FAILED if outcome is StageState.FAILED
                                  else RunState.CANCELLED, others=_SKIP)
                    break
            else:
                self._input = None  # nothing left to retry; let the data go
                self._move_to(RunState.SUCCEEDED, result=data)
                return
        except BaseException as exc:  # a bug of ours must still end the run
            self._fail_internal(exc)
        finally:
            # closing the loop runs async generators' cleanup: user code, isolated
            call_isolated("event-loop cleanup", self._loops.close, run_id=self.run_id)
        if interrupted is not None and self._thread is None:
            raise interrupted  # inline: Ctrl-C cancelled the run; the caller sees it too

    def _run_stage(self, index: int, data: Any) -> tuple[StageState, Any]:
        """Run one stage, or load its cached output; return (its final state, its output
        or the exception)."""
        stage = self._stages[index]
        cache = self._caches[index]
        key = cache.key(self.pipeline.name, stage.name, stage.fn, data, no_input=NO_INPUT) \
            if cache is not None else None
        if cache is not None and key is not None:
            found, output = cache.load(key)
            if found:  # the stage is not called: its output is what it returned before
                self._move_to(current=index, stages={index: StageState.CACHED})
                with self._cond:
                    self._input, self._input_index = output, index + 1
                return StageState.CACHED, output
        progress = StageProgress(stage.name, stage.total, log_sink=self._logs)
        executor = self._executor_for(index)
        capture = stage.capture if stage.capture is not None else \
            getattr(self.pipeline, "capture", True)
        context = StageContext(self.run_id, progress, self._loops,
                               last=index == len(self._stages) - 1, capture=capture)
        with self._cond:  # not status: what cancel() needs to reach the stage
            self._progress, self._context, self._stage_executor = progress, context, executor
            cancel_now = self._cancel_requested
        if cancel_now:
            progress.request_cancel()
        self._move_to(current=index, stages={index: StageState.RUNNING})
        token = _CURRENT.set(progress)
        # tqdm and the output streams are hooked at the first stage start, not at import;
        # remote executors capture in (or around) their worker instead
        if capture and executor.in_process:
            stage_output.install()
        library = libprogress.begin(progress, enabled=capture) if executor.in_process else None
        try:
            output = executor.call(stage, data, context)
        except (Cancelled, asyncio.CancelledError, KeyboardInterrupt) as exc:
            if self._asked_to_stop(exc):
                self._move_to(stages={index: StageState.CANCELLED})
                return StageState.CANCELLED, exc
            self._move_to(stages={index: StageState.FAILED},
                          error=ErrorInfo.from_exception(exc, stage.name))
            return StageState.FAILED, exc
        except BaseException as exc:
            self._move_to(stages={index: StageState.FAILED},
                          error=ErrorInfo.from_exception(exc, stage.name))
            return StageState.FAILED, exc
        finally:
            _CURRENT.reset(token)
            stage_output.end(library)  # its open lines are finished lines now
            libprogress.end(library)
        self._move_to(stages={index: StageState.SUCCEEDED})
        with self._cond:
            self._input, self._input_index = output, index + 1
        if cache is not None and key is not None:
            self._store(cache, key, output)
        return StageState.SUCCEEDED, output

    def _store(self, cache: StageCache, key: CacheKey, output: Any) -> None:
        """Store a stage's output in the driver, before the next stage can change it.

        After the stage's SUCCEEDED (already delivered: the ticker does not wait for
        the write, and no lock is held); a failure is a warning, never the run's.
        """
        try:
            cache.store(key, output)
        except Exception:  # store() warns for the output and the disk; this is a bug
            _log.exception("could not cache stage %r of run %s; the run goes on",
                           key.stage, self.run_id)

    def _asked_to_stop(self, exc: BaseException) -> bool:
        """Whether a stage's cancel-like exception is a cancel someone asked for.

        ``cancel()`` was called, or a ``KeyboardInterrupt`` reached a stage running in
        the caller's thread (the inline executor) or the main thread, where Ctrl-C and
        kernel interrupts land (a blocking ``pipe.run()`` with the thread executor is
        cancelled by its ``_join`` instead). Anything else (a stage raising
        ``KeyboardInterrupt`` itself in the run's own thread, or ``Cancelled`` from
        another run's ``result()``) is the stage failing, and is recorded as such.
        """
        with self._cond:
            if self._cancel_requested:
                return True
        return isinstance(exc, KeyboardInterrupt) and (
            self._thread is None or threading.current_thread() is threading.main_thread())

    def _cancel_asked(self) -> bool:
        with self._cond:
            return self._cancel_requested

    def _fail_internal(self, exc: BaseException) -> None:
        """End the run failed after an error in the engine itself (not in a stage).

        Its running stage fails, the pending ones are skipped; all checked as usual.
        """
        if self.done():
            return
        error = ErrorInfo.from_exception(exc, None)
        self._move_to(RunState.FAILED, error=error, others={
            StageState.RUNNING: StageState.FAILED, StageState.PENDING: StageState.SKIPPED})


def _record(run: Run, recorder: history.RunRecorder) -> None:
    """Record ``run`` in the history: the writer samples it about once a second while it
    runs (an observer would have the ticker sample every run ten times a second, watched
    or not), cancels it when another process asks through the database, and gets its
    final status from a done-callback. All hold the run weakly."""
    ref = weakref.ref(run)

    def sample() -> RunStatus | None:
        alive = ref()
        return None if alive is None else alive.status()

    def ended() -> None:
        alive = ref()
        if alive is not None:
            recorder(alive.status())

    def cancel() -> None:  # asked for through the database (the Jupyter extension)
        alive = ref()
        if alive is not None:
            alive.cancel()

    recorder.follow(run.status(), sample, cancel)
    run._on_done(ended)


def _weak_sampler(run: Run) -> Callable[[], RunStatus]:
    """``run._snapshot_locked`` for its notifier, without a strong reference to ``run``.

    A Run and its notifier referring to each other would leave a finished run (and its
    result) to the cyclic garbage collector, which may take many runs to come by; so
    the notifier reaches its run weakly (it samples only while someone holds the run:
    its driver thread, or a subscriber's caller).
    """
    ref = weakref.ref(run)

    def sample() -> RunStatus:
        alive = ref()
        if alive is None:  # pragma: no cover - nobody can ask a collected run
            raise RuntimeError("the run was garbage-collected")
        return alive._snapshot_locked()

    return sample


def _drive_thread(run: Run) -> None:
    """The driver thread: run the stages, then let go of the run (see ``_unpin``)."""
    run._drive()
    outcome = run._outcome
    del run  # this frame outlives the thread if a stage's traceback keeps its callers
    _unpin(outcome.exception)


def _unpin(exc: BaseException | None) -> None:
    """Clear our own finished frames that ``exc``'s traceback keeps alive.

    A traceback's frames keep their callers (``f_back``): here ``_run_stage`` and
    ``_drive``, whose ``self`` is the Run. The Run's Outcome box holds the exception, so
    without this a kept snapshot would keep the Run, hence the box, hence the exception
    and every frame's locals, for ever. The stage's own frames are left as they are.
    Frames still running are cleared by a later call (the driver thread's last one);
    an inline run's callers are the user's frames, and keep it as long as they live.
    """
    tb = exc.__traceback__ if exc is not None else None
    frame = tb.tb_frame if tb is not None else None
    while frame is not None:
        if frame.f_code in _ENGINE_CODES:
            try:
                frame.clear()
            except RuntimeError:  # still running: cleared later
                pass
        frame = frame.f_back


_ENGINE_CODES = frozenset({Run._drive.__code__, Run._run_stage.__code__,
                           _drive_thread.__code__})
