"""The worker process of the process executor: ``python -m stagewidget.engine.worker``.

It connects back to the run's process, receives the stage (a cloudpickled function and
its input), runs it with a local ``StageProgress`` (the same zero-lock hot path) and a
reporter thread that sends the progress at most ``refresh_hz`` times a second and
turns a "cancel" message into ``request_cancel()``. It ends by sending the output, the
exception (with its traceback as a note) or "cancelled".
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import sys
import threading
import traceback
from multiprocessing.connection import Client, Connection
from typing import Any

from ..errors import Cancelled
from .libprogress import capturing
from .progress import StageProgress

__all__ = ["Snapshot", "progress_message"]

Snapshot = tuple[Any, ...]


def progress_message(progress: StageProgress) -> Snapshot:
    """What the run's process needs to mirror the stage's progress."""
    done, total, desc, inner = progress.sample()
    return ("progress", done, total, desc, inner, dict(progress.metrics()),
            dict(progress.history()), progress.message)


def _report(progress: StageProgress, conn: Connection, send_lock: threading.Lock,
            stop: threading.Event, period_s: float) -> None:
    last = None
    while not stop.is_set():
        if conn.poll(period_s):
            try:
                command = conn.recv()
            except (EOFError, OSError):  # the run's process is gone: stop the stage
                command = "cancel"
            if command == "cancel":
                progress.request_cancel()
        message = progress_message(progress)
        if message != last:
            with send_lock:
                conn.send(message)
            last = message


def _outcome(fn: Any, data: Any, has_input: bool) -> tuple[Any, ...]:
    import cloudpickle

    args = (data,) if has_input else ()
    try:
        output = asyncio.run(fn(*args)) if inspect.iscoroutinefunction(fn) else fn(*args)
        return ("ok", cloudpickle.dumps(output))
    except Cancelled:
        return ("cancelled",)
    except BaseException as exc:  # everything goes back to the run's process
        text = "".join(traceback.format_exception(exc))
        try:
            exc.add_note(f"[in worker process {os.getpid()}]\n{text}")
            payload = cloudpickle.dumps(exc)
            pickle.loads(payload)
        except Exception:
            payload = cloudpickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}\n{text}"))
        return ("error", payload, text)


def main(address: str) -> None:
    """Serve one stage call for the run's process listening at ``address``."""
    import cloudpickle

    authkey = bytes.fromhex(sys.stdin.readline().strip())
    conn = Client(address, family="AF_UNIX", authkey=authkey)
    sys.path[:] = conn.recv()  # first, so functions pickled by reference can be imported
    fn, data, has_input, name, total, period_s, capture = cloudpickle.loads(conn.recv_bytes())
    progress = StageProgress(name, total)
    progress.activate()
    send_lock = threading.Lock()  # the reporter and the main thread both send
    stop = threading.Event()
    reporter = threading.Thread(target=_report, name="stagewidget-worker-report",
                                args=(progress, conn, send_lock, stop, period_s), daemon=True)
    reporter.start()
    with capturing(progress, capture):  # tqdm bars: levels sent with the progress
        outcome = _outcome(fn, data, has_input)
    stop.set()
    reporter.join()
    with send_lock:
        conn.send(progress_message(progress))
        conn.send(outcome)
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
