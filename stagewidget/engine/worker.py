"""The worker process of the process executor: ``python -m stagewidget.engine.worker``.

It connects back to the run's process, receives the stage (a cloudpickled function and
its input), runs it with a local ``StageProgress`` (the same zero-lock hot path) and a
reporter thread that sends the progress at most ``refresh_hz`` times a second and
turns a "cancel" message into ``request_cancel()``. It ends by sending the output, the
exception (with its traceback as a note) or "cancelled".

The worker leads its own process group (the run's process starts it in a new session),
so ending the group ends the stage and every process the stage started. It dies with
the run's process: on Linux the kernel sends it SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``); everywhere, the reporter thread watches the connection and the
parent pid. Either way the worker kills its whole group at once, quietly: nobody is
left to read an answer or a traceback.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Client, Connection
from typing import Any

from ..errors import Cancelled
from .call import call_stage
from .libprogress import capturing
from .progress import StageProgress
from .report import ProgressReport

__all__ = ["end_group", "main"]


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def end_group(*_: object) -> None:
    """Kill this worker's process group: the worker and whatever its stage started.

    Also the SIGTERM handler. Only a group leader does so (the run's process starts
    workers with ``start_new_session``); a worker started otherwise just exits.
    """
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """End the worker's group when the run's process ``parent_pid`` dies (Linux).

    The kernel sends SIGTERM when the *thread* that started this process exits; that
    is the thread calling ``ProcessExecutor.call()``, which waits for this worker, so
    it lives as long as the call. Elsewhere the reporter thread's watch does the job.
    """
    signal.signal(signal.SIGTERM, end_group)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the reporter thread notices instead
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        end_group()


def _report(progress: StageProgress, conn: Connection, send_lock: threading.Lock,
            stop: threading.Event, period_s: float, parent_pid: int) -> None:
    last = None
    try:
        while not stop.is_set():
            if os.getppid() != parent_pid:
                end_group()
            if conn.poll(period_s) and conn.recv() == "cancel":
                progress.request_cancel()
            report = ProgressReport.of(progress)
            if report != last:
                with send_lock:
                    conn.send(("progress", report.to_wire()))
                last = report
    except (EOFError, OSError):  # the run's process is gone (or gave up on this call)
        end_group()


def _outcome(fn: Any, data: Any) -> tuple[Any, ...]:
    import cloudpickle

    try:
        output = call_stage(fn, data)
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


def main(address: str, parent_pid: int) -> None:
    """Serve one stage call for the run's process ``parent_pid`` listening at ``address``."""
    import cloudpickle

    die_with_parent(parent_pid)
    # A pipe to the run's log when captured: lines go as they are printed, as on a terminal
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    authkey = bytes.fromhex(sys.stdin.readline().strip())
    try:
        conn = Client(address, family="AF_UNIX", authkey=authkey)
        sys.path[:] = conn.recv()  # first, so functions pickled by reference can be imported
        payload = conn.recv_bytes()
    except (EOFError, OSError):  # the run's process went away before the stage came
        end_group()
    fn, data, name, total, period_s, capture = cloudpickle.loads(payload)
    progress = StageProgress(name, total)
    progress.activate()
    send_lock = threading.Lock()  # the reporter and the main thread both send
    stop = threading.Event()
    reporter = threading.Thread(target=_report, name="stagewidget-worker-report",
                                args=(progress, conn, send_lock, stop, period_s, parent_pid),
                                daemon=True)
    reporter.start()
    with capturing(progress, capture):  # tqdm bars: levels sent with the progress
        outcome = _outcome(fn, data)
    stop.set()
    reporter.join()
    for stream in (sys.stdout, sys.stderr):  # the run's process ends the group on an answer
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        with send_lock:
            conn.send(("progress", ProgressReport.of(progress).to_wire()))
            conn.send(outcome)
        conn.close()
    except OSError:  # the run's process is gone: nobody to answer
        end_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
