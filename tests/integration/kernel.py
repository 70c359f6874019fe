"""A real ipykernel for tests, on ipykernel 7 and 6: run cells, record every IOPub message.

The kernel is a subprocess of a chosen interpreter: ``ipykernel7`` is the interpreter running
pytest (``.venv``, the latest ipykernel), ``ipykernel6`` is ``.venv-ipykernel6/bin/python``
(the latest ipykernel 6.x, made by ``scripts/kernel-envs``). ipykernel 7 changed which cell
messages sent from background threads are attributed to (ipykernel PRs 1451 and 1546,
ipywidgets issue 4001; test_kernel_harness.py pins down what each version does), so widget
tests run on both.

Use the ``kernel`` fixture (bind it in the test module), or ``start_kernel()`` directly::

    import kernel as harness
    from kernel import Kernel

    kernel = harness.kernel  # the fixture: each test runs on ipykernel7 and ipykernel6

    def test_something(kernel: Kernel) -> None:
        result = kernel.execute("print(6 * 7)")
        assert result.stdout == "42\\n"
        kernel.wait_for(lambda msgs: any(m.msg_type == "comm_open" for m in msgs))

IOPub is read by one recorder thread from its own SUB socket, so every message is kept, in
order of arrival, whatever its parent. ``size_bytes`` is the sum of the raw ZMQ frame sizes as
received (topic, ``<IDS|MSG>`` delimiter, HMAC signature, header, parent header, metadata,
content and binary buffers): the bytes a frontend's IOPub socket gets for that message.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.session import Session

__all__ = ["KERNELS", "ExecResult", "IOPubMessage", "Kernel", "kernel", "start_kernel"]

ROOT = Path(__file__).resolve().parents[2]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
START_TIMEOUT_S = 60.0
SHUTDOWN_WAIT_S = 5.0


KERNELS: dict[str, Path] = {
    "ipykernel7": Path(sys.executable),  # scripts/test runs pytest with .venv/bin/python
    "ipykernel6": ROOT / ".venv-ipykernel6" / "bin" / "python",  # made by scripts/kernel-envs
}
"""Kernel name -> the interpreter its kernel runs in; the name's digit is ipykernel's major."""


@dataclass(frozen=True, slots=True)
class IOPubMessage:
    """One IOPub message as received by the recorder thread.

    ``received_s`` is ``time.monotonic()`` when its frames arrived; ``size_bytes`` the sum of
    its raw ZMQ frame sizes. ``msg`` is the deserialized message (header, parent_header,
    metadata, content, buffers); treat it as read-only.
    """

    received_s: float
    size_bytes: int
    msg: dict[str, Any]

    @property
    def msg_type(self) -> str:
        return self.msg["header"]["msg_type"]

    @property
    def parent_msg_id(self) -> str | None:
        """The ``msg_id`` of the request this message is attributed to (None if none)."""
        return self.msg["parent_header"].get("msg_id")

    @property
    def content(self) -> dict[str, Any]:
        return self.msg["content"]


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What one execute request produced, up to its ``status: idle`` on IOPub."""

    msg_id: str
    reply: dict[str, Any]
    """The execute_reply content (``status``, ``execution_count``, ...)."""
    messages: tuple[IOPubMessage, ...]
    """Every IOPub message whose parent is this request, up to and including idle."""

    @property
    def ok(self) -> bool:
        return self.reply["status"] == "ok"

    @property
    def stdout(self) -> str:
        return self._stream("stdout")

    @property
    def stderr(self) -> str:
        return self._stream("stderr")

    @property
    def displays(self) -> tuple[dict[str, Any], ...]:
        """Mime bundles of display_data, update_display_data and execute_result, in order."""
        kinds = {"display_data", "update_display_data", "execute_result"}
        return tuple(m.content["data"] for m in self.messages if m.msg_type in kinds)

    @property
    def widget_model_ids(self) -> tuple[str, ...]:
        """Model ids of the widget views displayed (``application/vnd.jupyter.widget-view+json``)."""
        return tuple(d[WIDGET_MIME]["model_id"] for d in self.displays if WIDGET_MIME in d)

    @property
    def errors(self) -> tuple[dict[str, Any], ...]:
        """Contents (``ename``, ``evalue``, ``traceback``) of the error messages."""
        return tuple(m.content for m in self.messages if m.msg_type == "error")

    def _stream(self, name: str) -> str:
        return "".join(m.content["text"] for m in self.messages
                       if m.msg_type == "stream" and m.content["name"] == name)


class _Recorder:
    """Reads IOPub on its own thread and keeps every message; lets callers wait on them."""

    def __init__(self, url: str, session: Session) -> None:
        self.messages: list[IOPubMessage] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        # A separate Session: jupyter_client's checks duplicate signatures in a set that
        # the shell channel's session also updates, from the test thread.
        self._session = Session(key=session.key, signature_scheme=session.signature_scheme)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(url)
        self._thread = threading.Thread(target=self._read, name="test-kernel-iopub", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if not self._socket.poll(100):
                continue
            while True:
                try:
                    frames = self._socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received_s = time.monotonic()
                _, parts = self._session.feed_identities(frames)
                msg = self._session.deserialize(parts)
                message = IOPubMessage(received_s, sum(len(f) for f in frames), msg)
                with self._cond:
                    self.messages.append(message)
                    self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Sequence[IOPubMessage]], Any], timeout: float
                 ) -> Any:
        with self._cond:
            found = self._cond.wait_for(lambda: predicate(self.messages), timeout)
            if not found:
                last = [(m.msg_type, m.parent_msg_id) for m in self.messages[-5:]]
                raise TimeoutError(f"no IOPub messages matched within {timeout} s "
                                   f"({len(self.messages)} recorded; last: {last})")
            return found

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()
        self._context.term()


class Kernel:
    """A running kernel: execute cells, read the IOPub record. Made by ``start_kernel``.

    Drive it from one thread (the test's); only the recorder runs on its own thread.
    """

    def __init__(self, name: str, manager: KernelManager, client: BlockingKernelClient,
                 recorder: _Recorder) -> None:
        self.name = name
        self._process: subprocess.Popen[bytes] = manager.provisioner.process  # type: ignore[union-attr]
        self.pid: int = self._process.pid
        self._manager = manager
        self._client = client
        self._recorder = recorder
        self.ipykernel_version: str = self._user_expression("__import__('ipykernel').__version__")

    @property
    def messages(self) -> list[IOPubMessage]:
        """Every IOPub message received so far, oldest first (read-only, still growing)."""
        return self._recorder.messages

    def execute(self, code: str, timeout: float = 30.0, *, allow_errors: bool = False
                ) -> ExecResult:
        """Run ``code`` as a cell; block until its reply and its ``idle`` status arrive.

        Raises:
            AssertionError: the cell raised and ``allow_errors`` is false (the traceback is
                in the message).
            TimeoutError: no reply or no idle within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        scanned = len(self.messages)  # nothing before the request can be a reply to it
        mine: list[IOPubMessage] = []
        msg_id = self._client.execute(code, allow_stdin=False)
        reply = self._reply(msg_id, deadline)

        def until_idle(msgs: Sequence[IOPubMessage]) -> tuple[IOPubMessage, ...] | None:
            nonlocal scanned  # scan each message once: a cell may send thousands
            for m in msgs[scanned:]:
                scanned += 1
                if m.parent_msg_id == msg_id:
                    mine.append(m)
                    if m.msg_type == "status" and m.content["execution_state"] == "idle":
                        return tuple(mine)
            return None

        messages = self.wait_for(until_idle, max(deadline - time.monotonic(), 0.0))
        result = ExecResult(msg_id, reply["content"], messages)
        if not result.ok and not allow_errors:
            raise AssertionError("cell failed:\n" + "\n".join(
                "\n".join(e.get("traceback", [])) or f"{e['ename']}: {e['evalue']}"
                for e in result.errors or (result.reply,)))
        return result

    def wait_for(self, predicate: Callable[[Sequence[IOPubMessage]], Any],
                 timeout: float = 20.0) -> Any:
        """Block until ``predicate(messages)`` is truthy; return that value.

        ``predicate`` gets the live list of recorded messages (do not change it) and is
        called on the recorder's condition each time a message arrives, so keep it quick.

        Raises:
            TimeoutError: it did not hold within ``timeout`` seconds.
        """
        return self._recorder.wait_for(predicate, timeout)

    def messages_since(self, since_s: float, *msg_types: str) -> list[IOPubMessage]:
        """The messages received at or after ``since_s`` (monotonic), of ``msg_types`` if given."""
        return [m for m in list(self.messages)
                if m.received_s >= since_s and (not msg_types or m.msg_type in msg_types)]

    def comm_messages(self, since: float = 0.0) -> list[IOPubMessage]:
        """The comm_open, comm_msg and comm_close messages received at or after ``since``."""
        return self.messages_since(since, "comm_open", "comm_msg", "comm_close")

    def send_comm_msg(self, comm_id: str, data: dict[str, Any]) -> None:
        """Send a comm message as a frontend does (e.g. a widget's button click)."""
        msg = self._client.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self._client.shell_channel.send(msg)

    def kernel_info(self, timeout: float = 30.0) -> dict[str, Any]:
        """Send a kernel_info_request (as frontends do on their own); return the reply message."""
        return self._reply(self._client.kernel_info(), time.monotonic() + timeout)

    def _user_expression(self, expression: str) -> Any:
        msg_id = self._client.execute("", silent=True, store_history=False, allow_stdin=False,
                                      user_expressions={"value": expression})
        reply = self._reply(msg_id, time.monotonic() + 30.0)["content"]
        value = reply["user_expressions"]["value"]
        if value["status"] != "ok":
            raise RuntimeError(f"kernel could not evaluate {expression!r}: {value}")
        return ast.literal_eval(value["data"]["text/plain"])

    def _reply(self, msg_id: str, deadline: float) -> dict[str, Any]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no shell reply to {msg_id} in time")
            try:
                msg = self._client.get_shell_msg(timeout=remaining)
            except queue.Empty as exc:
                raise TimeoutError(f"no shell reply to {msg_id} in time") from exc
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    def close(self) -> None:
        """Ask the kernel to shut down, kill it by PID if it has not within 5 s; idempotent."""
        if self._manager.has_kernel:
            with contextlib.suppress(Exception):
                self._manager.shutdown_kernel(now=False)  # waits, then kills if need be
        if self._process.poll() is None:  # Popen, so a reaped PID is never signalled
            self._process.kill()
            self._process.wait(SHUTDOWN_WAIT_S)
        self._recorder.close()
        self._client.stop_channels()
        self._manager.cleanup_resources()


@contextlib.contextmanager
def start_kernel(name: str, workdir: Path) -> Iterator[Kernel]:
    """Start the kernel ``name`` (a key of ``KERNELS``) on 127.0.0.1 in ``workdir``.

    Blocks until the kernel answers ``kernel_info`` and its IOPub reaches the recorder,
    yields the ``Kernel`` and shuts it down on exit.
    """
    python = KERNELS[name]
    spec_dir = workdir / "kernels" / f"stagewidget-{name}"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"stagewidget tests ({name})", "language": "python"}))
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # debugpy's frozen-modules warning at start
    manager = KernelManager(
        kernel_name=f"stagewidget-{name}", ip="127.0.0.1",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(workdir / "kernels")]),
        connection_file=str(workdir / "connection.json"), shutdown_wait_time=SHUTDOWN_WAIT_S)
    manager.start_kernel(cwd=str(workdir), env=env)
    client = manager.client()
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    recorder = _Recorder(client._make_url("iopub"), client.session)
    kernel: Kernel | None = None
    try:
        _wait_until_ready(manager, client, recorder)
        kernel = Kernel(name, manager, client, recorder)
        yield kernel
    finally:
        if kernel is not None:
            kernel.close()
        else:
            recorder.close()
            client.stop_channels()
            manager.shutdown_kernel(now=True)


def _wait_until_ready(manager: KernelManager, client: BlockingKernelClient,
                      recorder: _Recorder) -> None:
    # A SUB socket misses what is published before its subscription reaches the kernel:
    # ready means a kernel_info request's status messages came back on IOPub.
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not manager.is_alive():
            raise RuntimeError("kernel died while starting")
        msg_id = client.kernel_info()
        with contextlib.suppress(TimeoutError):
            recorder.wait_for(lambda msgs, i=msg_id: any(m.parent_msg_id == i for m in msgs),
                              timeout=0.25)
            return
    raise TimeoutError(f"kernel did not answer on IOPub within {START_TIMEOUT_S} s")


@pytest.fixture(params=list(KERNELS), ids=list(KERNELS))
def kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Kernel]:
    """A fresh kernel per test, once on ipykernel 7 and once on ipykernel 6.

    Narrow a test to one version with
    ``@pytest.mark.parametrize("kernel", ["ipykernel6"], indirect=True)``.
    """
    name = request.param
    if not KERNELS[name].exists():
        pytest.skip(f"no {KERNELS[name]}: run scripts/kernel-envs")
    with start_kernel(name, tmp_path_factory.mktemp(name)) as started:
        major = name.removeprefix("ipykernel")
        if started.ipykernel_version.split(".")[0] != major:
            pytest.fail(f"kernel {name!r} runs ipykernel {started.ipykernel_version}, "
                        f"not {major}.x: run scripts/setup and scripts/kernel-envs")
        yield started
