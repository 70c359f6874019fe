"""A run's own bounded log, and the ``logging`` records its stages emit routed to it.

The log holds ``logging`` records from the run's stages and their captured output
(``print``, ``sys.stdout``/``sys.stderr``, ``warnings``: see ``engine.output``). A
notebook view shows them in its collapsible log panel, instead of whichever cell
happens to run when a background thread logs; the text view prints each finished line.
The handler is installed on the root logger when a view asks for it (never at import)
and only once per process.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import deque
from collections.abc import Hashable, Iterable
from itertools import groupby
from operator import itemgetter

from .progress import _CURRENT

__all__ = ["LOG_LINES", "RunLog", "RunLogHandler", "capture_logs"]

LOG_LINES = 200  # log lines a run keeps for its views
LINE_CHARS = 10_000  # longest line kept; an open line this long is finished as it is
PENDING_WRITES = 1024  # writes a writer keeps uncut at most (when nobody reads the log)
_INSTALL_LOCK = threading.Lock()  # guards the one-time install below, nothing else
_CONTROL = re.compile(r"([\r\b])")


class RunLog:
    """A run's bounded log: its latest finished lines, then the lines still open.

    A ``logging`` record is one finished line (``append``). Captured output comes as
    text from a *writer* (a stage's stdout in one thread, a worker's pipe): ``write``
    keeps it (one list append), and it is cut into lines, in the order it was written,
    when the log is read (or every ``PENDING_WRITES`` writes). A writer's last line
    stays *open* until its newline comes (or ``close``): the log shows its latest
    state, redrawn as a terminal would (``\\r`` back to the start of the line, ``\\b``
    one character back, later text writing over earlier), so a progress line redrawn
    a thousand times (Keras' Progbar, ``\\r`` counters) is one line that changes, and
    is kept once, finished, when its newline comes. Open lines are listed after the finished ones.

    Any thread may call any method; ``snapshot()`` is called under the run's lock.
    """

    def __init__(self, max_lines: int = LOG_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._pending: list[tuple[Hashable, str]] = []  # (writer, text) not cut into lines
        self._open: dict[Hashable, list[object]] = {}  # writer -> [line so far, cursor]
        self._total = 0
        # Beside the run's lock, not under it: it orders the cutting of text into lines,
        # which the stage's threads may do (every PENDING_WRITES writes) while the
        # notifier reads the log under the run's lock. Held only for string and deque
        # work; nothing is called out under it. write() itself takes no lock.
        self._lock = threading.Lock()

    def write(self, writer: Hashable, text: str) -> None:
        """Add text written by ``writer`` (any thread; the print hot path: no lock)."""
        pending = self._pending
        pending.append((writer, text))
        if len(pending) >= PENDING_WRITES:  # nobody reads the log: bound the memory
            with self._lock:
                self._cut_locked()

    def append(self, line: str) -> None:
        """Add one finished line (a formatted ``logging`` record)."""
        with self._lock:
            self._cut_locked()  # what was printed before it comes before it
            self._finish(line)

    def extend(self, lines: Iterable[str]) -> None:
        """Add finished lines (sent by a worker process or a Dask task)."""
        with self._lock:
            self._cut_locked()
            for line in lines:
                self._finish(line)

    def _cut_locked(self) -> None:
        """Cut the pending text into finished lines and open lines, in order of writing."""
        pending = self._pending
        count = len(pending)
        if not count:
            return
        # Appends land after the first ``count`` items: taking exactly those loses none,
        # whatever the writing threads do meanwhile (each list operation is atomic).
        taken = pending[:count]
        del pending[:count]
        for writer, writes in groupby(taken, key=itemgetter(0)):
            self._feed(writer, "".join([text for _, text in writes]))

    def _feed(self, writer: Hashable, text: str) -> None:
        state = self._open.pop(writer, None)
        line, cursor = ("", 0) if state is None else state
        *done, rest = text.split("\n")
        for part in done:
            line, cursor = _draw(line, cursor, part)  # type: ignore[arg-type]
            self._finish(line)
            line, cursor = "", 0
        line, cursor = _draw(line, cursor, rest)  # type: ignore[arg-type]
        if len(line) > LINE_CHARS:  # print(".", end="") for ever: bounded all the same
            self._finish(line)
        elif line:
            self._open[writer] = [line, cursor]

    def _finish(self, line: str) -> None:
        if len(line) > LINE_CHARS:
            line = f"{line[:LINE_CHARS]}... ({len(line) - LINE_CHARS} more characters)"
        self._lines.append(line)
        self._total += 1

    def show_open(self, writer: Hashable, lines: Iterable[str]) -> None:
        """Show ``lines`` as ``writer``'s open lines (a worker's, mirrored); () for none."""
        with self._lock:
            for key in [key for key in self._open if _of(key, writer)]:
                del self._open[key]
            for index, line in enumerate(lines):
                self._open[(writer, index)] = [line, len(line)]

    def close(self, writer: Hashable) -> None:
        """``writer`` is done: its open lines become finished lines.

        Its open lines: the one of ``writer`` itself, and those of every writer that is
        a tuple starting with ``writer`` (a stage's ``(stage, stream, thread)``).
        """
        with self._lock:
            self._cut_locked()
            for key in [key for key in self._open if _of(key, writer)]:
                line = self._open.pop(key)[0]
                if line:
                    self._finish(line)  # type: ignore[arg-type]

    def snapshot(self) -> tuple[tuple[str, ...], int, int]:
        """(latest lines, finished lines ever added, how many of the latest are open)."""
        with self._lock:
            self._cut_locked()
            open_lines = tuple(str(state[0]) for state in self._open.values() if state[0])
            return tuple(self._lines) + open_lines, self._total, len(open_lines)

    def since(self, total: int) -> tuple[list[str], int]:
        """The finished lines added after the first ``total`` (those still kept), and
        how many there are now in all: ``since(n)[1]`` is the next call's argument."""
        with self._lock:
            self._cut_locked()
            new = min(self._total - total, len(self._lines))
            lines = list(self._lines)[len(self._lines) - new:] if new > 0 else []
            return lines, self._total

    def open_lines(self) -> list[str]:
        """The open lines' latest states."""
        with self._lock:
            self._cut_locked()
            return [str(state[0]) for state in self._open.values() if state[0]]


def _of(key: Hashable, writer: Hashable) -> bool:
    """Whether ``key`` is ``writer`` or one of its parts (a tuple starting with it)."""
    return key == writer or (isinstance(key, tuple) and key[:1] == (writer,))


def _draw(line: str, cursor: int, text: str) -> tuple[str, int]:
    """``line`` with ``text`` written at ``cursor`` as a terminal would; the new cursor."""
    if "\r" not in text and "\b" not in text:
        if cursor == len(line):  # the usual case: writing at the end
            return line + text, cursor + len(text)
        return line[:cursor] + text + line[cursor + len(text):], cursor + len(text)
    for part in _CONTROL.split(text):
        if part == "\r":
            cursor = 0
        elif part == "\b":
            cursor = max(cursor - 1, 0)
        elif part:
            line, cursor = line[:cursor] + part + line[cursor + len(part):], cursor + len(part)
    return line, cursor


class RunLogHandler(logging.Handler):
    """Append records from a running stage to its run's bounded log.

    Records from outside any stage are printed to stderr at WARNING and above, as
    Python's last-resort handler would have done had this handler not been there.
    """

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                            "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        """Called by logging in the thread that logs."""
        progress = _CURRENT.get()
        sink = getattr(progress, "log_sink", None)
        if sink is not None:
            sink.append(self.format(record))
            return
        root = logging.getLogger()
        if record.levelno >= logging.WARNING and root.handlers == [self]:
            sys.stderr.write(self.format(record) + "\n")


def capture_logs() -> RunLogHandler:
    """Install the run log handler on the root logger once; return it."""
    root = logging.getLogger()
    with _INSTALL_LOCK:
        for handler in root.handlers:
            if isinstance(handler, RunLogHandler):
                return handler
        handler = RunLogHandler()
        root.addHandler(handler)
        return handler
