"""Route ``logging`` records emitted inside a run's stages to that run's own log.

A notebook view shows them in its collapsible log panel, instead of whichever cell
happens to run when a background thread logs. The handler is installed on the root
logger when a view asks for it (never at import) and only once per process.
"""

from __future__ import annotations

import logging
import sys
import threading

from .progress import _CURRENT

__all__ = ["RunLogHandler", "capture_logs"]

_INSTALL_LOCK = threading.Lock()  # guards the one-time install below, nothing else


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
