"""A plain-text view: a live line on a terminal, sparse log lines anywhere else."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from ..engine.output import original
from ..errors import ConfigError
from ..status import RunState, RunStatus, StageState
from .format import progress_held, run_line, stage_line, summary

__all__ = ["TextView"]

_CLEAR_LINE = "\r\x1b[2K"


class TextView:
    """Write the progress of runs as text to a stream.

    Live (on a terminal), one line is rewritten in place and each transition is kept
    as a line above it. Otherwise (CI logs, papermill, nbval) each transition is one
    line and progress is logged at most once per ``heartbeat_s``. A run's end prints
    its summary. Each finished line of the run's log (what its stages printed or
    logged) is written once, as a line of its own: above the live line, never glued to
    it. Subscribe it with ``run.subscribe(TextView())``; one view may watch several runs.

    Args:
        stream: where to write; None means ``sys.stderr`` as it is at construction.
        live: rewrite a line in place; None means when ``stream.isatty()``.
        heartbeat_s: least time between two progress lines when not live.
        width: width of the progress bars, in characters.
        clock: monotonic seconds, used to space out progress lines.

    Raises:
        ConfigError: ``heartbeat_s`` is negative or ``width`` is not positive.
    """

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None,
                 heartbeat_s: float = 10.0, width: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if heartbeat_s < 0:
            raise ConfigError(f"heartbeat_s must be >= 0 (got {heartbeat_s!r})")
        if width < 1:
            raise ConfigError(f"width must be a positive number of characters (got {width!r})")
        self._stream: TextIO = sys.stderr if stream is None else stream
        self._live = _isatty(self._stream) if live is None else live
        self._heartbeat_s = heartbeat_s
        self._width = width
        self._clock = clock
        # run_id -> (last snapshot seen, clock time of the last line written for it)
        self._runs: dict[str, tuple[RunStatus, float]] = {}
        self._logged: dict[str, int] = {}  # run_id -> its finished log lines written
        self._held: dict[str, tuple[object, float]] = {}  # run_id -> see progress_held
        # Several runs may share this view. The ticker calls it from one thread, but not
        # always the same one (a stuck observer keeps its thread; a subscriber to a
        # finished run calls it itself): the lock keeps lines whole and the dict consistent.
        self._lock = threading.Lock()

    @property
    def live(self) -> bool:
        """True when a line is rewritten in place (a terminal)."""
        return self._live

    def __call__(self, status: RunStatus) -> None:
        """Show the snapshot ``status``.

        Called on the process's ticker thread, in order for each run, at most the
        run's ``refresh_hz`` times a second (the ticker is the only rate limiter: this
        view needs none of its own), or once on the subscriber's thread when
        subscribing to a finished run. Blocks only on the stream; write errors
        propagate.
        """
        with self._lock:
            now = self._clock()
            previous, written_at = self._runs.pop(status.run_id, (None, -math.inf))
            logged = self._log_lines(status)  # not progress: the heartbeat ignores them
            self._held[status.run_id], held_s = progress_held(
                status, self._held.get(status.run_id))
            lines = _transition_lines(previous, status, self._width)
            if status.done():
                lines.append(summary(status))
            elif (not self._live and not lines and status.state is RunState.RUNNING
                  and now - written_at >= self._heartbeat_s):
                lines.append(run_line(status, self._width, held_s))
            if lines:
                written_at = now
            if not status.done():
                self._runs[status.run_id] = (status, written_at)
            else:
                self._logged.pop(status.run_id, None)
                self._held.pop(status.run_id, None)
            self._write(logged + lines, status, held_s)

    def _log_lines(self, status: RunStatus) -> list[str]:
        """The run's finished log lines not written yet (a note for any that were lost)."""
        written = self._logged.get(status.run_id, 0)
        new = status.logs_total - written
        if new <= 0:
            return []
        self._logged[status.run_id] = status.logs_total
        finished = status.logs[:len(status.logs) - status.logs_open]
        lines = list(finished[max(len(finished) - new, 0):])
        if new > len(lines):  # more than the log keeps came between two snapshots
            lines.insert(0, f"[{new - len(lines)} earlier log lines not shown]")
        return lines

    def _write(self, lines: list[str], status: RunStatus, held_s: float) -> None:
        text = "".join(line + "\n" for line in lines)
        if self._live:
            text = _CLEAR_LINE + text + ("" if status.done()
                                         else run_line(status, self._width, held_s))
        if text:
            # Our own text, never a stage's output: past the capture proxy of sys.stderr
            stream = original(self._stream)
            stream.write(text)
            stream.flush()


def _transition_lines(previous: RunStatus | None, status: RunStatus, width: int) -> list[str]:
    """One line per transition since ``previous`` (None: the run was not seen before)."""
    lines = []
    if status.state is RunState.RUNNING and (previous is None
                                             or previous.state is RunState.PENDING):
        lines.append(run_line(status, width))  # started, or first seen mid-run
    if previous is None:
        return lines  # a finished run seen late shows just its summary
    name_width = max((len(stage.name) for stage in status.stages), default=0)
    for old, new in zip(previous.stages, status.stages, strict=False):
        # skipped stages are not news: the summary lists them
        if new.state is not old.state and new.state is not StageState.SKIPPED:
            lines.append(stage_line(new, width, name_width=name_width))
    return lines


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False
