"""Output capture: what a stage prints goes to its run's log, not to whichever cell runs.

While a stage runs with capture on (the default; ``capture=False`` on the pipeline or
the stage turns it off together with the tqdm capture), its writes to ``sys.stdout``
and ``sys.stderr`` (``print``, ``sys.stdout.write``, a library's ``\\r`` progress line)
and its ``warnings`` become lines of the run's log (``engine.logs.RunLog``), beside its
``logging`` records: the widget shows them in its log panel, the text view prints each
finished line above its live line. A ``\\r``-redrawn line is one line in its latest
state, kept once when its newline comes.

How: at the first capturing stage start (never at import) ``sys.stdout`` and
``sys.stderr`` are replaced by proxies of the streams they were, and
``warnings.showwarning`` is wrapped. Each thread's writes make lines of their own
(threads printing at once do not splice their lines). A write decides in one context-variable lookup
whose it is, by the rule that decides whose a tqdm bar is (``libprogress.owner``: the
stage of the thread's context, or the one running stage for a thread it started); a
write that is no stage's goes to the stream the proxy replaced, unchanged, so the
notebook's own output and other threads' are untouched, and so is everything after
the run. Every attribute other than ``write``/``writelines``/``flush`` (``encoding``,
``isatty``, ``fileno``, ``buffer``, ipykernel's ``set_parent``...) is the replaced
stream's.

A stream swapped in later is respected: ``contextlib.redirect_stdout`` (in a stage or
not) sends its block's output where it says, as it always did; a stream someone put
on ``sys.stdout`` for good is wrapped in turn at the next stage start. Not captured:
writes to ``sys.stdout.buffer`` or to file descriptor 1/2 (C extensions, child
processes) from the kernel's process, and streams saved before the first stage
started (a ``logging.StreamHandler()`` made earlier keeps writing where it wrote).
The process executor captures its worker's whole stdout and stderr, file descriptors
included (``engine.process``); a Dask task's Python-level output comes back with its
progress (``engine.cluster``).
"""

from __future__ import annotations

import sys
import threading
import warnings
from threading import get_ident
from typing import Any, TextIO

from .libprogress import StageCapture, owner

__all__ = ["end", "install", "original"]

_install_lock = threading.Lock()  # installs (or re-installs) the hooks, one stage at a time


def install() -> None:
    """Hook ``sys.stdout``, ``sys.stderr`` and ``warnings.showwarning``, where not yet.

    Called at each capturing stage start (never at import); cheap when all three are
    still hooked. A stream or ``showwarning`` replaced since is wrapped in turn.
    """
    if _hooked():
        return
    with _install_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, _StreamProxy):
                setattr(sys, name, _StreamProxy(name, stream))
        if not getattr(warnings.showwarning, "_stagewidget", False):
            warnings.showwarning = _hook_showwarning(warnings.showwarning)


def _hooked() -> bool:
    return (isinstance(sys.stdout, _StreamProxy) and isinstance(sys.stderr, _StreamProxy)
            and getattr(warnings.showwarning, "_stagewidget", False))


def end(capture: StageCapture | None) -> None:
    """The stage of ``capture`` has ended: its unfinished lines become finished lines."""
    if capture is not None and capture.progress.log_sink is not None:
        capture.progress.log_sink.close(capture)


def original(stream: TextIO) -> TextIO:
    """The stream ``stream`` stands for: itself, or the one a proxy replaced.

    A view writing its own text (the text view on ``sys.stderr``) writes there, so its
    text is never mistaken for a stage's output.
    """
    while isinstance(stream, _StreamProxy):
        stream = stream._sw_stream
    return stream


class _StreamProxy:
    """``sys.stdout`` or ``sys.stderr`` while stages may print.

    A stage's writes go to its run's log; everyone else's to the replaced stream.
    """

    def __init__(self, name: str, stream: TextIO) -> None:
        self._sw_name = name
        self._sw_stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` to the calling stage's log, or to the replaced stream."""
        stage = owner()
        sink = None if stage is None else stage.progress.log_sink
        if sink is None:
            return self._sw_stream.write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        # A line per thread: two threads printing at once do not splice their lines
        sink.write((stage, self._sw_name, get_ident()), text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        """Write each of ``lines`` (no newlines added, as ``io`` does)."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the replaced stream (a stage's lines need no flushing)."""
        if owner() is None:
            self._sw_stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sw_stream, name)

    def __repr__(self) -> str:
        return f"<stagewidget capture of sys.{self._sw_name}: {self._sw_stream!r}>"


def _hook_showwarning(previous: Any) -> Any:
    """``warnings.showwarning`` sending a stage's warnings to its run's log."""

    def showwarning(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
        stage = owner() if file is None else None
        sink = None if stage is None else stage.progress.log_sink
        if sink is None:
            previous(message, category, filename, lineno, file, line)
            return
        text = warnings.formatwarning(message, category, filename, lineno, line)
        sink.write((stage, "stderr", get_ident()), text)

    showwarning._stagewidget = True  # type: ignore[attr-defined]
    showwarning.__wrapped__ = previous  # type: ignore[attr-defined]
    return showwarning
