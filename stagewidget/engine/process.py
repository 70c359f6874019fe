"""The process executor: run a stage in a worker process, so a pure-Python CPU-bound
stage stops competing with the kernel (or the run's other threads) for the GIL.

Each stage call starts ``python -m stagewidget.engine.worker`` (no ``__main__``
re-import, unlike multiprocessing's spawn, so scripts need no ``if __name__`` guard)
and talks to it over an authenticated Unix socket. The stage function and its input go
by cloudpickle, so functions defined in notebook cells work. Progress comes back
coalesced by the worker; cancel is cooperative first, then the worker is terminated
after ``grace_s``.

The worker's stdout and stderr (file descriptors 1 and 2, so its prints, warnings and
tracebacks, a C library's output and the output of the processes it starts) are pipes
read here into the run's log, when the stage captures (the default): nothing of it
reaches the run's process's own stdout. With ``capture=False`` the worker inherits them.

A worker leads its own process group (a new session), so the processes a stage starts
end with the stage: the group is killed when the call ends for any reason (answer,
cancel grace expired, worker died). A worker also ends its group when the run's
process dies (see ``worker.die_with_parent``). A process that should outlive its stage
must start its own session (``subprocess.Popen(..., start_new_session=True)``).
"""

from __future__ import annotations

import codecs
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection, Listener
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, WorkerDied
from .executors import Executor, StageContext
from .report import ProgressReport

if TYPE_CHECKING:
    from .definition import Stage

__all__ = ["ProcessExecutor", "WorkerDied"]


class _Call:
    """One stage call in flight: its worker process and connection."""

    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.send_lock = threading.Lock()  # cancel() sends from another thread
        self.kill_at: float | None = None


_OUTPUT_GRACE_S = 2.0  # after its group is gone, how long a worker's output may take


def _read_output(proc: subprocess.Popen[bytes], context: StageContext) -> list[threading.Thread]:
    """Start a thread per pipe of ``proc`` copying its text into the run's log."""
    log = context.progress.log_sink
    readers = []
    for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        if pipe is None or log is None:
            continue
        writer = (context, name)

        def read(fd: int = pipe.fileno(), writer: tuple[object, str] = writer) -> None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            try:
                while chunk := os.read(fd, 65536):
                    log.write(writer, decoder.decode(chunk))
            except OSError:  # closed under us once the call gave up waiting
                pass
            log.write(writer, decoder.decode(b"", final=True))
            log.close(writer)

        reader = threading.Thread(target=read, name=f"stagewidget-worker-{name}", daemon=True)
        reader.start()
        readers.append(reader)
    return readers


def _join_output(proc: subprocess.Popen[bytes], readers: list[threading.Thread]) -> None:
    """Wait (bounded) for the worker's last output; close the pipes."""
    deadline = time.monotonic() + _OUTPUT_GRACE_S
    for reader in readers:
        # A process the stage started in a session of its own may hold the pipe open
        # for ever: its later output is not the stage's business any more.
        reader.join(max(deadline - time.monotonic(), 0.0))
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None and not any(reader.is_alive() for reader in readers):
            pipe.close()


class ProcessExecutor(Executor):
    """Run each stage in a fresh worker process.

    Args:
        grace_s: after ``cancel()``, how long the stage may take to notice before its
            process is terminated.
        refresh_hz: how often the worker sends progress (when it changed).
    """

    name = "process"
    in_process = False  # the worker captures the stage's tqdm bars

    def __init__(self, *, grace_s: float = 5.0, refresh_hz: float = 10.0) -> None:
        self.grace_s = grace_s
        self.refresh_hz = refresh_hz
        self._calls: dict[int, _Call] = {}  # id(context) -> call; dict ops are atomic

    def call(self, stage: Stage, data: Any, context: StageContext) -> Any:
        """Run ``stage`` in a worker process; mirror its progress; return its output."""
        import cloudpickle

        with tempfile.TemporaryDirectory(prefix="stagewidget-") as folder:
            address = os.path.join(folder, "socket")
            authkey = secrets.token_bytes(32)
            with Listener(address, family="AF_UNIX", authkey=authkey) as listener:
                # The worker asks the kernel for a signal when the thread that starts
                # it exits (PR_SET_PDEATHSIG): this one, which waits in this call until
                # the worker has ended, so the worker cannot outlive the call by it.
                output = subprocess.PIPE if context.capture else None
                proc = subprocess.Popen(
                    [sys.executable, "-m", "stagewidget.engine.worker", address,
                     str(os.getpid())],
                    stdin=subprocess.PIPE, stdout=output, stderr=output, cwd=os.getcwd(),
                    start_new_session=True)
                readers = _read_output(proc, context)
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(authkey.hex().encode() + b"\n")
                    proc.stdin.close()
                    conn = _accept(listener, proc)
                except BaseException:
                    _end(proc)
                    _join_output(proc, readers)
                    raise
        call = _Call(proc, conn)
        self._calls[id(context)] = call
        try:
            # NO_INPUT pickles by name: the worker gets the same sentinel
            payload = (stage.fn, data, stage.name, stage.total, 1.0 / self.refresh_hz,
                       context.capture)
            conn.send(list(sys.path))
            conn.send_bytes(cloudpickle.dumps(payload))
            if context.progress.cancelled():
                self.cancel(context)
            return self._follow(stage, call, context)
        finally:
            self._calls.pop(id(context), None)
            conn.close()
            _end(proc)
            _join_output(proc, readers)  # the stage's last lines are in its log

    def cancel(self, context: StageContext) -> None:
        """Ask the worker to cancel; after ``grace_s``, kill it and what its stage started."""
        call = self._calls.get(id(context))
        if call is None:
            return
        call.kill_at = time.monotonic() + self.grace_s
        try:
            with call.send_lock:
                call.conn.send("cancel")
        except OSError:
            pass  # the worker is already gone; _follow reports it

    def _follow(self, stage: Stage, call: _Call, context: StageContext) -> Any:
        import cloudpickle

        while True:
            if call.kill_at is not None and time.monotonic() > call.kill_at:
                _end(call.proc)  # the worker and the processes its stage started
                raise Cancelled(f"stage {stage.name!r} did not stop within {self.grace_s} s "
                                "of cancel(); its worker process was terminated")
            if not call.conn.poll(0.1):
                if _exit_code(call.proc) is not None:
                    raise _died(stage, call)
                continue
            try:
                message = call.conn.recv()
            except (EOFError, OSError):
                _wait_exited(call.proc)
                raise _died(stage, call) from None
            kind = message[0]
            if kind == "progress":
                ProgressReport.from_wire(message[1]).apply_to(context.progress)
            elif kind == "ok":
                return cloudpickle.loads(message[1])
            elif kind == "cancelled":
                raise Cancelled(f"stage {stage.name!r} was cancelled")
            elif kind == "error":
                raise cloudpickle.loads(message[1])


def _accept(listener: Listener, proc: subprocess.Popen[bytes]) -> Connection:
    """Accept the worker's connection, or fail if it died before connecting."""
    result: list[Connection] = []

    def accept() -> None:
        try:
            result.append(listener.accept())
        except OSError:  # the listener closed: the worker never connected
            pass

    accepter = threading.Thread(target=accept, name="stagewidget-accept", daemon=True)
    accepter.start()
    while accepter.is_alive():
        accepter.join(0.1)
        code = _exit_code(proc)
        if code is not None and not result:
            raise WorkerDied(f"the worker process exited with code {code} "
                             "before it connected; is stagewidget importable there?")
    return result[0]


def _exit_code(proc: subprocess.Popen[bytes]) -> int | None:
    """The worker's exit code (negative: killed by that signal), None while it runs.

    Unlike ``proc.poll()`` this leaves an exited worker unreaped, so its process group
    id cannot be taken by a new process before ``_end`` has killed the group.
    """
    if proc.returncode is not None or not hasattr(os, "waitid"):
        return proc.poll()
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped by someone else
        return proc.poll()
    if info is None or info.si_pid == 0:
        return None
    if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        return -info.si_status
    return info.si_status


def _wait_exited(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Wait (unreaped) for a worker whose connection closed to exit."""
    deadline = time.monotonic() + timeout_s
    while _exit_code(proc) is None and time.monotonic() < deadline:
        time.sleep(0.01)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill the worker's process group (the worker and what its stage started); reap it."""
    if proc.returncode is None:  # not reaped yet: the group id is still the worker's
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the whole group has already exited
    proc.wait()


def _died(stage: Stage, call: _Call) -> WorkerDied:
    code = _exit_code(call.proc)
    how = f"was killed by signal {-code}" if code is not None and code < 0 else \
        f"exited with code {code}"
    return WorkerDied(f"the worker process of stage {stage.name!r} {how} before it answered")
