"""What becomes of unfinished runs when the program (or the kernel) ends.

A run's threads are daemon threads, which the interpreter stops without a word at exit.
So a script ending right after ``pipe.start()`` would lose its run silently. Instead,
as ``concurrent.futures`` does for its workers, the end of the program waits for
unfinished runs, up to ``STAGEWIDGET_EXIT_TIMEOUT_S`` seconds (default 300), with a
one-line notice on stderr; Ctrl-C during that wait cancels them. Runs still unfinished
at the timeout are cancelled too (and get a few seconds to record it).

A Jupyter kernel never waits: an interactive Restart must not hang, and a headless
executor (papermill, nbconvert, nbclient) has already saved the notebook when it shuts
the kernel down. There, one warning per unfinished run goes to the kernel process's
real stderr (``sys.__stderr__``), which those tools show in their logs.

The hook is registered on the first background run launched, never at import, with
``threading._register_atexit`` (as ``concurrent.futures`` does): it runs before
``atexit`` handlers (a status service's final writes, logging's shutdown), while the
runs' daemon threads still run.
"""

from __future__ import annotations

import atexit
import math
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .run import Run

__all__ = ["EXIT_TIMEOUT_ENV", "exit_timeout_s", "unfinished_runs", "watch"]

EXIT_TIMEOUT_ENV = "STAGEWIDGET_EXIT_TIMEOUT_S"
DEFAULT_EXIT_TIMEOUT_S = 300.0
CANCEL_GRACE_S = 5.0  # after a cancel at exit: time for runs to record "cancelled"
_FLUSH_S = 2.0  # time for a finished run's views to get its final status
_NAMED = 3  # runs named in the one-line notice; more are counted

# The process's unfinished background runs. Process-wide by nature (the interpreter has
# one exit); the lock guards the set and the flag, and is never held while calling out.
_lock = threading.Lock()
_live: set[Run] = set()
_registered = False


def watch(run: Run) -> None:
    """Keep ``run`` in view until it ends; register the exit hook once (at first use)."""
    global _registered
    with _lock:
        _live.add(run)
        register, _registered = not _registered, True
    if register:
        _register(_at_exit)
    run._on_done(lambda: _forget(run))


def _forget(run: Run) -> None:
    with _lock:
        _live.discard(run)


def unfinished_runs() -> list[Run]:
    """The background runs of this process that have not ended yet, oldest first."""
    with _lock:
        runs = list(_live)
    return sorted((r for r in runs if not r.done()), key=lambda r: r.status().created_at)


def exit_timeout_s() -> float:
    """Seconds the end of the program waits for unfinished runs (``inf``: no limit).

    From ``$STAGEWIDGET_EXIT_TIMEOUT_S`` read at exit: a number of seconds, ``0`` to not
    wait, ``inf`` or ``none`` to wait as long as they take; default 300.
    """
    text = os.environ.get(EXIT_TIMEOUT_ENV, "").strip().lower()
    if not text:
        return DEFAULT_EXIT_TIMEOUT_S
    if text in ("none", "inf", "infinity"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value < 0:
        _say(sys.stderr, f"stagewidget: {EXIT_TIMEOUT_ENV}={text!r} is not a number of "
                         f"seconds >= 0; using {DEFAULT_EXIT_TIMEOUT_S:g}")
        return DEFAULT_EXIT_TIMEOUT_S
    return value


def _register(hook: Any) -> None:
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every CPython since 3.9 has it
        atexit.register(hook)
        return
    try:
        register(hook)
    except RuntimeError:  # the interpreter is already shutting down: nothing to wait for
        pass


def _at_exit() -> None:
    """The exit hook (main thread, at interpreter exit)."""
    try:
        runs = unfinished_runs()
        if not runs:
            return
        if _in_kernel():
            _warn_kernel(runs)
            return
        _wait_or_cancel(runs, exit_timeout_s(), sys.stderr)
    except KeyboardInterrupt:  # Ctrl-C before the wait began: cancel all the same
        _cancel(unfinished_runs(), sys.stderr, "Ctrl-C: cancelling")


def _wait_or_cancel(runs: list[Run], timeout_s: float, stream: TextIO) -> None:
    """Wait up to ``timeout_s`` for ``runs``; cancel what is left (or all, on Ctrl-C)."""
    what = _describe(runs)
    if timeout_s <= 0:
        _say(stream, f"stagewidget: not waiting for {what} ({EXIT_TIMEOUT_ENV}=0); "
                     "it stops unfinished")
        return
    limit = "" if math.isinf(timeout_s) else f"up to {timeout_s:g} s "
    deadline = time.monotonic() + timeout_s
    try:  # Ctrl-C may land anywhere from here on, the notice included
        _say(stream, f"stagewidget: waiting {limit}for {what}; Ctrl-C cancels")
        for run in runs:
            if not run._wait_ended(deadline):
                break
            run._notifier.flush(_FLUSH_S)  # the run's text view prints its last line
    except KeyboardInterrupt:
        _cancel(runs, stream, "Ctrl-C: cancelling")
        return
    left = [run for run in runs if not run.done()]
    if left:
        _cancel(left, stream, f"gave up after {timeout_s:g} s; cancelling")


def _cancel(runs: list[Run], stream: TextIO, why: str) -> None:
    """Cancel ``runs`` and give them a few seconds to record it (Ctrl-C stops waiting)."""
    left = [run for run in runs if not run.done()]
    if not left:
        return
    _say(stream, f"stagewidget: {why} {_describe(left)}")
    deadline = time.monotonic() + CANCEL_GRACE_S
    try:
        for run in left:
            run.cancel()
        for run in left:
            if run._wait_ended(deadline):
                run._notifier.flush(max(deadline - time.monotonic(), 0.0))
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, let the program end
        pass


def _describe(runs: list[Run]) -> str:
    """``1 unfinished run (train-model, running 'train')`` and the like, on one line.

    At most ``_NAMED`` runs are named; the rest are counted ("and 890 more").
    """
    parts = []
    for run in runs[:_NAMED]:
        status = run.status()
        stage = status.current_stage
        where = f" {stage.name!r}" if stage is not None else ""
        parts.append(f"{status.pipeline}, {status.state.value}{where}")
    if len(runs) > _NAMED:
        parts.append(f"and {len(runs) - _NAMED} more")
    noun = "run" if len(runs) == 1 else "runs"
    return f"{len(runs)} unfinished {noun} ({'; '.join(parts)})"


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (decided now, at exit; IPython is not imported)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return getattr(shell, "kernel", None) is not None


def _warn_kernel(runs: list[Run]) -> None:
    """One warning per unfinished run on the kernel process's real stderr; no waiting."""
    stream = sys.__stderr__
    if stream is None:
        return
    for run in runs:
        status = run.status()
        stage = status.current_stage
        where = f" in stage {stage.name!r}" if stage is not None else ""
        _say(stream, f"stagewidget: warning: the kernel is shutting down while run "
                     f"{status.run_id} of pipeline {status.pipeline!r} is still "
                     f"{status.state.value}{where}; it stops unfinished. A headless "
                     "notebook should end with run.wait() or use pipe.run(...)")


def _say(stream: TextIO | None, line: str) -> None:
    if stream is None:
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):  # stderr closed or gone: nobody to tell
        pass
