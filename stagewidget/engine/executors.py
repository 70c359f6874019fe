"""Executors decide where a run's stages execute: a background thread or the caller's.

The engine drives the stages in order and asks an executor to run each one. The process
and distributed executors of later modules implement the same small ``Executor``
interface, so a ``Run`` never needs to know which one it has.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import _RunOptionError
from .call import call_stage

if TYPE_CHECKING:
    from .definition import Stage
    from .progress import StageProgress

__all__ = ["EXECUTORS", "Executor", "InlineExecutor", "StageContext", "ThreadExecutor",
           "is_dask_client", "resolve_executor"]


class StageContext:
    """What an executor gets for one stage call: its progress handle and an event loop.

    Async stages run on an event loop owned by the run's driver thread, created on
    first use; in the inline executor inside an already running loop (a notebook
    cell) that loop is reused, with nest-asyncio2 applied to it then and only then.
    """

    def __init__(self, run_id: str, progress: StageProgress, loops: LoopOwner, *,
                 last: bool = False, capture: bool = True) -> None:
        self.run_id = run_id
        self.progress = progress
        self.last = last  # the run's last stage: its output is the run's result
        self.capture = capture  # show the stage's tqdm bars as its progress
        self._loops = loops

    def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` to completion as a task (cancelled with the run); block until then."""
        return self._loops.run(coro)

    def cancel(self) -> None:
        """Cancel the running coroutine, if any (from any thread)."""
        self._loops.cancel()


class LoopOwner:
    """The event loop of one run's driver thread, and the task running on it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
        self._cancelled = False

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` as a task on this thread's loop until it completes."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            loop = self._loop
        else:
            _allow_nested(loop)
        task = loop.create_task(coro)  # copies the context: sw.track() & co. see the stage
        self._task = (loop, task)
        if self._cancelled:  # cancel() may have looked before the task existed
            task.cancel()
        try:
            return loop.run_until_complete(task)
        finally:
            self._task = None

    def cancel(self) -> None:
        """Cancel the current task from any thread."""
        self._cancelled = True
        current = self._task
        if current is not None:
            loop, task = current
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile: nothing left to cancel
                pass

    def close(self) -> None:
        """Close the loop this owner created (never a borrowed one)."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()


def _allow_nested(loop: asyncio.AbstractEventLoop) -> None:
    """Let ``run_until_complete`` re-enter ``loop``, which is already running here.

    Only the inline executor with async stages in a notebook cell needs this. We use
    nest-asyncio2, the maintained fork of nest-asyncio that ipykernel 7 itself depends
    on (the original is archived and breaks on newer Pythons); the original is accepted
    when it is all there is.
    """
    if getattr(loop, "_nest_patched", False):
        return
    try:
        import nest_asyncio2 as nest
    except ImportError:
        try:
            import nest_asyncio as nest
        except ImportError:
            raise RuntimeError(
                "async stages with executor='inline' inside a running event loop (a "
                "notebook cell) need nest-asyncio2: pip install nest-asyncio2, or use the "
                "default executor='thread'"
            ) from None
    nest.apply(loop)


class Executor:
    """Where a stage's function runs.

    ``background`` says whether the run gets a driver thread of its own (True) or is
    driven in the thread that starts it (the inline executor). ``in_process`` says
    whether the stage's code runs in this process (its tqdm bars are captured here);
    executors that run it elsewhere capture there, as ``context.capture`` says.
    """

    name = "executor"
    background = True
    in_process = True

    def call(self, stage: Stage, data: Any, context: StageContext) -> Any:
        """Run ``stage`` on ``data`` and return its output. Called on the driver thread."""
        return call_stage(stage.fn, data, context.run_coroutine)

    def cancel(self, context: StageContext) -> None:
        """Interrupt ``context``'s stage from another thread (progress calls already raise)."""
        context.cancel()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class ThreadExecutor(Executor):
    """Run the stages in the run's own background thread (the default)."""

    name = "thread"


class InlineExecutor(Executor):
    """Run the stages in the calling thread, for breakpoints and ``%debug``."""

    name = "inline"
    background = False


# The executors by name, as "module:attribute", imported on first use: the process and
# Dask executors build on this module, so it cannot import theirs.
EXECUTORS: dict[str, str] = {
    "thread": "stagewidget.engine.executors:ThreadExecutor",
    "inline": "stagewidget.engine.executors:InlineExecutor",
    "process": "stagewidget.engine.process:ProcessExecutor",
    "dask": "stagewidget.engine.cluster:DaskExecutor",
}


def executor_class(name: str) -> Callable[..., Executor]:
    """The executor class registered as ``name`` in ``EXECUTORS`` (imported now)."""
    module, _, attribute = EXECUTORS[name].partition(":")
    kind: Callable[..., Executor] = getattr(importlib.import_module(module), attribute)
    return kind


def is_dask_client(value: Any) -> bool:
    """True for a ``distributed.Client`` or a subclass, checked without importing Dask."""
    return any(kind.__name__ == "Client" and kind.__module__.split(".")[0] == "distributed"
               for kind in type(value).__mro__)


def resolve_executor(value: Any, *, what: str = "executor") -> Executor:
    """Turn the ``executor=`` argument into an ``Executor``, or raise ``ConfigError``.

    The error is also a ``PipelineError`` (what 0.1 raised), see ``errors.py``.
    """
    if value is None:
        return ThreadExecutor()
    if isinstance(value, Executor):
        return value
    if isinstance(value, str) and value in EXECUTORS and value != "dask":
        return executor_class(value)()
    if is_dask_client(value):
        return executor_class("dask")(value)
    raise _RunOptionError(
        f"{what} must be 'thread', 'inline', 'process', a dask.distributed Client or an "
        f"Executor (got {value!r})"
    )
