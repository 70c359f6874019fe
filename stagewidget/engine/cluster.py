"""The Dask executor: run a stage as a task on a ``dask.distributed`` cluster, live.

``pipe.start(data, executor=client)`` (or ``Stage(fn, executor=client)``) submits each
stage as one task. On the worker the stage gets a local ``StageProgress`` (the same
zero-lock hot path), so ``sw.track``/``advance``/``report``/``cancelled`` work there; a
reporter thread sends its progress at most ``refresh_hz`` times a second, only when it
changed, as Dask worker events (``Worker.log_event``), which the notebook's client
receives through ``Client.subscribe_topic`` and mirrors into the run's status. Cancel sets
a ``distributed.Event`` the reporter watches (cooperative), then the future is cancelled
after ``grace_s``. The workers need stagewidget installed, like any library a task uses.

With capture on, what the task prints (``sys.stdout``/``sys.stderr``, ``warnings``) goes
to the run's log with its progress events, and not to the worker's stdout. Not
covered there: output written to file descriptors 1/2 directly (C code, child
processes), which stays the worker's; and while a task runs, output from a thread the
worker starts after it (another task's pool thread) when it is the only stage running
on that worker (``libprogress.owner``'s rule).
"""

from __future__ import annotations

import operator
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, WorkerDied
from . import output as stage_output
from .call import call_stage
from .executors import Executor, StageContext, is_dask_client
from .libprogress import capturing
from .logs import RunLog
from .progress import _CURRENT, StageProgress
from .report import ProgressReport

if TYPE_CHECKING:
    from .definition import Stage

__all__ = ["DaskExecutor", "is_dask_client", "run_remote_stage"]


def _tail(outcome: tuple[Any, list[Any], bool]) -> tuple[list[Any], bool]:
    """(progress, cancelled) of a stage task's outcome: small, pulled without the output."""
    return outcome[1], outcome[2]


class _Outbox:
    """A task's log lines not sent yet: each goes in exactly one message."""

    def __init__(self, log: RunLog) -> None:
        self.log = log
        self.sent = 0
        self.lock = threading.Lock()  # the reporter and the task's end both take lines

    def report(self, progress: StageProgress) -> ProgressReport:
        """``progress`` now, with the lines not sent yet."""
        with self.lock:
            lines, self.sent = self.log.since(self.sent)
        return ProgressReport.of(progress, tuple(lines), tuple(self.log.open_lines()))


def _mirror(progress: StageProgress, wire: list[Any]) -> None:
    ProgressReport.from_wire(wire).apply_to(progress)


def run_remote_stage(fn: Any, data: Any, name: str, total: int | None, topic: str,
                     cancel_name: str, period_s: float, capture: bool = True
                     ) -> tuple[Any, list[Any], bool]:
    """The Dask task of one stage: run ``fn`` and report its progress.

    Runs on a worker; ``data`` is ``NO_INPUT`` for a first stage without input (it
    pickles by name). Returns (output, the final ``ProgressReport`` on the wire, whether
    it was cancelled): a
    cancelled stage is not an error to Dask, so the worker logs nothing. Any exception
    is re-raised with the worker's address as a note.
    """
    from distributed import Event, get_client, get_worker

    worker = get_worker()
    outbox = _Outbox(RunLog())
    progress = StageProgress(name, total, log_sink=outbox.log)
    # Bind the worker's client here: the reporter thread could not find it on its own.
    cancel = Event(cancel_name, client=get_client())
    stop = threading.Event()

    def report() -> None:
        last = None
        while not stop.wait(period_s):
            try:
                if cancel.is_set():
                    progress.request_cancel()
            except Exception:  # the scheduler is briefly unreachable: look again later
                pass
            report = outbox.report(progress)
            if report != last or report.lines:  # new lines go out even if equal to the last
                worker.log_event(topic, report.to_wire())
                last = report

    reporter = threading.Thread(target=report, name="stagewidget-dask-report", daemon=True)
    token = progress.activate()
    reporter.start()
    if capture:
        stage_output.install()  # prints: lines sent with the progress
    cancelled = False
    try:
        with capturing(progress, capture) as library:  # tqdm bars: levels sent likewise
            try:
                output = call_stage(fn, data)
            finally:
                stage_output.end(library)
    except Cancelled:
        output, cancelled = None, True
    except Exception as exc:
        exc.add_note(f"[stage {name!r} on Dask worker {worker.address}]")
        raise
    finally:
        stop.set()
        reporter.join()
        _CURRENT.reset(token)
    return output, outbox.report(progress).to_wire(), cancelled


class DaskExecutor(Executor):
    """Run each stage as a task on a Dask cluster, with live progress.

    Args:
        client: a ``distributed.Client``.
        refresh_hz: most progress events per second a task sends (when it changed).
        grace_s: after ``cancel()``, how long the stage may take to notice before its
            future is cancelled (the task itself may then run on until it returns).
        keep_on_cluster: leave each stage's output on the cluster (a ``Future``, the next
            stage's input, resolved on the worker) instead of pulling it into this
            process; the last stage's output is always pulled, so ``run.result()`` is
            the value.
    """

    name = "dask"
    in_process = False  # the task captures the stage's tqdm bars on its worker

    def __init__(self, client: Any, *, refresh_hz: float = 4.0, grace_s: float = 5.0,
                 keep_on_cluster: bool = False) -> None:
        self.client = client
        self.refresh_hz = refresh_hz
        self.grace_s = grace_s
        self.keep_on_cluster = keep_on_cluster
        self._calls: dict[int, tuple[Any, str, list[float]]] = {}  # dict ops are atomic

    def __repr__(self) -> str:
        return f"<DaskExecutor on {self.client.scheduler.address}>"

    def call(self, stage: Stage, data: Any, context: StageContext) -> Any:
        """Submit ``stage`` as a task; mirror its progress; return its output (or Future)."""
        from distributed import Event

        client = self.client
        label = f"{stage.name}-{context.run_id[:8]}-{uuid.uuid4().hex[:8]}"
        topic, cancel_name = f"stagewidget-{label}", f"stagewidget-cancel-{label}"
        client.subscribe_topic(topic, lambda event: _mirror(context.progress, event[1]))
        future = client.submit(
            run_remote_stage, stage.fn, data, stage.name, stage.total, topic, cancel_name,
            1.0 / self.refresh_hz, context.capture,
            key=f"stagewidget-{label}", pure=False)
        deadline: list[float] = []  # set by cancel(): when to give up waiting
        self._calls[id(context)] = (future, cancel_name, deadline)
        try:
            if context.progress.cancelled():
                self.cancel(context)
            return self._follow(stage, future, context, deadline)
        finally:
            self._calls.pop(id(context), None)
            try:
                client.unsubscribe_topic(topic)
                Event(cancel_name, client=client).clear()  # frees it on the scheduler
            except Exception:  # the client is closing; nothing left to tidy there
                pass

    def cancel(self, context: StageContext) -> None:
        """Ask the task to stop (cooperative); give up on it after ``grace_s``."""
        from distributed import Event

        call = self._calls.get(id(context))
        if call is None:
            return
        _, cancel_name, deadline = call
        deadline.append(time.monotonic() + self.grace_s)
        Event(cancel_name, client=self.client).set()

    def _follow(self, stage: Stage, future: Any, context: StageContext,
                deadline: list[float]) -> Any:
        from distributed import wait

        while future.status == "pending":
            if deadline and time.monotonic() > deadline[0]:
                future.cancel()
                raise Cancelled(f"stage {stage.name!r} did not stop within {self.grace_s} s "
                                "of cancel(); its Dask future was cancelled")
            try:
                wait([future], timeout=0.1)
            except TimeoutError:
                pass
        if future.status != "finished":
            self._raise(stage, future)
        if self.keep_on_cluster and not context.last:
            if deadline:  # cancel() came: not worth a task to learn whether it was in time
                raise Cancelled(f"stage {stage.name!r} was cancelled")
            # Small tasks: they pull nothing here, but each waits for a free worker thread.
            progress, cancelled = self.client.submit(_tail, future, pure=False).result()
            output = None if cancelled else self.client.submit(operator.getitem, future, 0,
                                                               pure=False)
        else:
            # Straight from the worker's memory: a task to split the outcome would wait for
            # a free thread, perhaps behind sw.map items a cancel left running.
            output, progress, cancelled = future.result()
        _mirror(context.progress, progress)  # the final count, whatever events arrived
        if cancelled:
            raise Cancelled(f"stage {stage.name!r} was cancelled")
        return output

    def _raise(self, stage: Stage, future: Any) -> None:
        from distributed.scheduler import KilledWorker

        try:
            future.result()
        except KilledWorker as exc:
            raise WorkerDied(
                f"stage {stage.name!r}: the Dask workers running it died ({exc}); Dask "
                "retries a task on another worker up to distributed.scheduler."
                "allowed-failures times") from exc
        raise Cancelled(f"stage {stage.name!r}: its Dask future was {future.status}")
