"""A real ipykernel for the benchmarks: start it, run code, record IOPub traffic."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from jupyter_client import KernelManager

__all__ = ["BenchKernel", "Message"]


@dataclass(frozen=True)
class Message:
    """One IOPub message as received: when, its type, its size on the wire (approx.)."""

    t: float
    msg_type: str
    size: int
    content: dict[str, Any]


def _size(msg: dict[str, Any]) -> int:
    # header, parent header, metadata and content travel as JSON frames, plus the
    # HMAC signature (64 hex chars) and the delimiter; buffers as raw bytes
    frames = (msg["header"], msg["parent_header"], msg["metadata"], msg["content"])
    text = sum(len(json.dumps(f, default=str)) for f in frames)
    return text + 64 + len(b"<IDS|MSG>") + sum(len(b) for b in msg.get("buffers", []))


class BenchKernel:
    """A kernel of this interpreter (ipykernel's own "python3" spec), on 127.0.0.1."""

    def __init__(self, cwd: str | None = None) -> None:
        self.manager = KernelManager(kernel_name="python3", ip="127.0.0.1")
        self.manager.start_kernel(cwd=cwd)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(60)
        self.messages: list[Message] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="bench-iopub", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            self.messages.append(Message(time.monotonic(), msg["header"]["msg_type"],
                                         _size(msg), msg["content"]))

    def execute(self, code: str, timeout: float = 300.0) -> dict[str, Any]:
        """Run ``code``; return its execute_reply content (raise on error)."""
        msg_id = self.client.execute(code)
        deadline = time.monotonic() + timeout
        while True:
            reply = self.client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.01))
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(f"kernel error: {content.get('ename')}: {content.get('evalue')}")
        return content

    def round_trip_s(self, code: str = "pass") -> float:
        """Seconds from sending an execute request to receiving its reply."""
        start = time.perf_counter()
        msg_id = self.client.execute(code, silent=True, store_history=False)
        while self.client.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
            pass
        return time.perf_counter() - start

    def close(self) -> None:
        """Shut the kernel down (and stop recording)."""
        self._stop.set()
        self._reader.join(5)
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
