"""Refuse to run on a Python without the GIL, which the progress hot path relies on.

A stage's ``advance()`` writes plain counters and appends to deques without a lock, and
the ticker reads them (and ``sys.getrefcount``) from another thread: that is safe only
because the GIL makes each of those bytecodes atomic. A free-threaded build (3.13t and
later) running without the GIL could tear them, so runs refuse to start there.
"""

from __future__ import annotations

import sys
import sysconfig

from ..errors import UnsupportedInterpreter

__all__ = ["gil_disabled", "require_gil"]


def gil_disabled() -> bool:
    """Whether this interpreter runs without the GIL right now.

    On a free-threaded build the GIL can still be on (``PYTHON_GIL=1``, ``-X gil=1``, or
    an extension that needs it): that is fine, so the running state is asked first and
    the build flag only where the interpreter cannot say.
    """
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_gil_enabled is not None:
        return not is_gil_enabled()
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def require_gil() -> None:
    """Raise ``UnsupportedInterpreter`` unless the GIL is on (called when a run starts)."""
    if gil_disabled():
        raise UnsupportedInterpreter(
            f"stagewidget cannot start runs on a free-threaded Python running without the "
            f"GIL ({sys.version.split()[0]}, {sys.executable}): its progress counters are "
            "written without a lock and rely on the GIL to stay consistent; run Python "
            "with PYTHON_GIL=1 (or -X gil=1), or use a standard (GIL) build")
