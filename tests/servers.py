"""Servers tests start for real, bound to 127.0.0.1: a free port, a redis-server that can
be stopped and started again on its port, and polling for what other processes do."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from conftest import WAIT_S

__all__ = ["RedisServer", "free_port", "wait_until"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = WAIT_S, what: str = "condition"):
    """Poll ``predicate`` (for states of other processes, which cannot signal us)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class RedisServer:
    """A redis-server on 127.0.0.1 with no persistence, in a temporary directory."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is missing: run scripts/test, which installs it "
                        "(apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="stagewidget-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                assert self.proc is not None and self.proc.poll() is None, "redis-server died"
                return False

        wait_until(answers, what="redis-server to answer")
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(WAIT_S)
        self.proc = None

    def client(self):
        import redis

        return redis.Redis(port=self.port, decode_responses=True)
