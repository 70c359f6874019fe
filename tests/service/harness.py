"""Service test harness: a real redis-server, services in this process or others (fixtures)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import svc_pipelines
from conftest import WAIT_S

from stagewidget.service import Service

HERE = Path(__file__).parent


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


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(params=["memory", "redis"])
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def prefix() -> str:
    return f"sw-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_service(request, prefix):
    """Start in-process services (port 0) on the memory or the Redis store; stop them after."""
    started: list[Service] = []

    def make(kind: str, **options) -> Service:
        redis_url = None
        if kind == "redis":
            redis_url = request.getfixturevalue("redis_server").url
        options.setdefault("adopt", False)
        service = Service(svc_pipelines.PIPELINES, port=0, redis=redis_url, prefix=prefix,
                          **options).start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


@pytest.fixture
def service(make_service, store_kind) -> Service:
    return make_service(store_kind)


@pytest.fixture
def client(service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as http:
        yield http


class ServiceProcess:
    """``python -m stagewidget serve svc_pipelines:PIPELINES`` in its own process."""

    def __init__(self, redis_url: str, prefix: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(HERE))
        # A file, not a pipe: nobody reads the service's log while it runs, and a full
        # pipe would block its logging (and with it every request that logs).
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stagewidget", "serve", "svc_pipelines:PIPELINES",
             "--port", str(self.port), "--redis", redis_url, *extra],
            cwd=HERE, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.prefix = prefix
        self.http = httpx.Client(base_url=self.url, timeout=WAIT_S)

        def healthy() -> bool:
            assert self.proc.poll() is None, self.output()
            try:
                return self.http.get("/api/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, what=f"the service on port {self.port}")

    def output(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            self.proc.wait(WAIT_S)
        self.http.close()
        self.log.close()


@pytest.fixture
def service_process(redis_server):
    started: list[ServiceProcess] = []

    def make(*extra: str) -> ServiceProcess:
        process = ServiceProcess(redis_server.url, "stagewidget", *extra)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop(kill=True)


def read_events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """Parse a Server-Sent Events stream into (event, JSON data) pairs."""
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
